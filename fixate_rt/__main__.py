"""``python -m fixate_rt`` = the ``fixate-rt`` command."""

from .cli import main

main()
