"""``python -m lucid_widgets`` runs the command-line interface."""

import sys

from lucid_widgets.cli import main

sys.exit(main())
