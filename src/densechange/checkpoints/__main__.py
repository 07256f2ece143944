"""``densechange weights list | download | verify | inspect | convert`` (see `checkpoints.cli`)."""

import sys

from densechange.checkpoints.cli import main

sys.exit(main())
