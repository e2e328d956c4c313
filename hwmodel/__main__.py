"""``python -m hwmodel`` runs the command line (hwmodel.cli)."""

import sys

from hwmodel.cli import main

sys.exit(main())
