#!/bin/sh
# vote: serves a one-line page on port 80.
while true; do echo "HTTP/1.0 200 OK

vote: cats or dogs?" | nc -l -p 80; done
