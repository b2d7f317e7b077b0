"""``python -m homelab_release`` runs the command line."""

from homelab_release.cli import main

raise SystemExit(main())
