"""``python -m pyg_schnet.cli``: the ``pyg-schnet`` command."""

import sys

from pyg_schnet.cli import main

sys.exit(main())
