"""``python -m checkpoints list | download | verify | inspect | convert`` (see `checkpoints.cli`)."""

import sys

from .cli import main

sys.exit(main())
