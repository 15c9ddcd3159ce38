"""``python -m wavegen`` runs the command line."""

from .cli import main

main()
