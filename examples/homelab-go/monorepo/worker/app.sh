#!/bin/sh
# worker: counts votes (here: says so every minute).
while true; do echo "worker: counting votes"; sleep 60; done
