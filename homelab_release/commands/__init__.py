"""Subcommands of ``homelab-release``; each module has ``register(subparsers)``."""

__all__ = []
