"""Checkpoint format, encoder construction from any weights source, weights registry and download.

Imports neither ``pretrain``, ``finetune`` nor ``datasets``: both training stages depend on it.
"""

from .encoder import Encoder
from .factory import build_encoder, load_encoder, save_encoder
from .format import FORMAT_VERSION, CheckpointError, load_file, read_metadata, save_file
from .fpn import FPN

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "Encoder",
    "FPN",
    "build_encoder",
    "load_encoder",
    "load_file",
    "read_metadata",
    "save_encoder",
    "save_file",
]
