"""Settings of the whole test session.

torch.compile (the compile tests) caches its kernels in ``TORCHINDUCTOR_CACHE_DIR``, by default a
folder in the system's temporary directory. When the suite runs from a virtual environment and
nothing else was asked for, the cache goes inside that environment (``.venv/torchinductor-cache``
under ``make test``), so that it is reused between runs and removed with the environment. The
variable is set before anything compiles, and the subprocesses of the suite inherit it.
"""
import os
import sys
from pathlib import Path

if "TORCHINDUCTOR_CACHE_DIR" not in os.environ and sys.prefix != sys.base_prefix:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(sys.prefix) / "torchinductor-cache")
