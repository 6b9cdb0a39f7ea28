"""``python -m sht`` is the ``sht`` command."""

import sys

from .cli import main

sys.exit(main())
