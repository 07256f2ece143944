"""``python -m densechange.datasets check | synth | tile | stack`` (see :mod:`densechange.datasets.tools.cli`)."""
import sys

from densechange.datasets.tools.cli import main

sys.exit(main())
