"""``python -m failstop_host`` runs the ``failstop`` command."""

import sys

from .cli import main

sys.exit(main())
