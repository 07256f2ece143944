"""densechange: SaDL dense pretraining and DeepCL change detection for remote sensing.

Everything the toolkit installs lives under this one name, so it can share an environment with
any other library (Hugging Face ``datasets`` included):

- :mod:`densechange.datasets`: image-mask and change datasets, raster I/O, the synthetic data, checks;
- :mod:`densechange.models`: the architectures: timm backbones, the FPN, a ViT's simple pyramid;
- :mod:`densechange.checkpoints`: the checkpoint format, encoders from any weights, the registry;
- :mod:`densechange.engine`: the run machinery both stages share;
- :mod:`densechange.pretrain`: SaDL pretraining, probes and pseudo-masks;
- :mod:`densechange.finetune`: DeepCL finetuning, prediction, evaluation and ONNX export.

One command fronts them all: ``densechange --help`` (see :mod:`densechange.engine.commands`).
:mod:`densechange.atomic` is the ground floor every package may import: files written whole or not at all,
and :class:`~densechange.atomic.OutputError` for an output the system refuses to write.
"""
from __future__ import annotations

__version__ = "0.1.0"
