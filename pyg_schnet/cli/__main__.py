"""``python -m pyg_schnet.cli``: the ``pyg-schnet`` command."""

from pyg_schnet.cli import console

console()
