"""``python -m relaygate`` runs the CLI."""

from relaygate.cli import main

main()
