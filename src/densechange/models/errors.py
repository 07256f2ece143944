"""The models package's error class, in a module without heavy imports so every part can raise it."""


class ModelError(ValueError):
    """An architecture that cannot be built as asked: an unknown backbone, arguments it does not take,
    an input size it cannot run, or recorded metadata this version does not build."""
