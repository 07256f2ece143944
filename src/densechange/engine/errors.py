"""The toolkit's error classes, gathered in one place for the command-line wrapper.

Each package owns one error class for bad input, named for what went wrong:

- ``datasets.DatasetError``: the user's images, masks, lists or folders;
- ``checkpoints.CheckpointError``: weights files, registry entries and downloads;
- ``models.ModelError``: an architecture that cannot be built as asked (an unknown backbone, an input
  size it cannot run);
- :class:`ConfigError` (here): a config file, key or value, or a command-line argument;
- :class:`TrainingError` (here): a run that cannot go on, such as a non-finite loss;
- ``densechange.atomic.OutputError``: an output the system would not let the toolkit write (full
  disk, no permission, read-only filesystem); it lives on the ground floor, beside the one helper
  that writes every output.

Both stages raise these classes; they define none of their own, so that the one wrapper
(:func:`densechange.engine.cli.run_cli`) knows every class that describes a user's mistake. Anything else is
a bug in the toolkit and keeps its traceback.
"""
from __future__ import annotations

from densechange.atomic import OutputError
from densechange.checkpoints.errors import CheckpointError
from densechange.models.errors import ModelError
from densechange.datasets.errors import DatasetError

__all__ = ["ConfigError", "TrainingError", "TOOLKIT_ERRORS", "CheckpointError", "DatasetError", "ModelError", "OutputError"]


class ConfigError(ValueError):
    """A config file, key or value that cannot be used; the message names it."""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""


TOOLKIT_ERRORS: tuple[type[Exception], ...] = (ConfigError, TrainingError, DatasetError, CheckpointError, ModelError,
                                               OutputError)
