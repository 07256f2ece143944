"""The package's one error type, in a module without heavy imports so every part can raise it."""


class CheckpointError(ValueError):
    """A checkpoint, weights source or registry entry is missing, corrupt or unusable."""
