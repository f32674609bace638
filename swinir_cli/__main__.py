"""``python -m swinir_cli`` runs the ``swinir`` command."""

from .cli import main

main()
