"""DeepCL change-detection finetuning: the method, the run, prediction, evaluation and export.

- :mod:`densechange.finetune.deepcl`: the method (model, heads, decoders, prior, losses, task, pseudo-changes);
- :mod:`densechange.finetune.inference`: the predictor, sliding windows, whole-scene streaming, scoring;
- :mod:`densechange.finetune.onnx`: ONNX export, its graph and metadata, the ONNX Runtime predictor;
- :mod:`densechange.finetune.compare`: grids of finetuning runs and their statistics;
- ``train``, ``config``, ``data``, ``checkpoint``, ``metrics``: the run; ``predict``, ``evaluate``, ``export``: the commands.

Entry points::

    densechange finetune --config FILE [key=value ...]              # train (see densechange.finetune.train)
    densechange predict checkpoint=FILE a=A b=B out=OUT
    densechange evaluate checkpoint=FILE data.root=ROOT [data.split=test]
    densechange export checkpoint=FILE out=model.onnx [form=stacked | form=deepness]

The run machinery (config, distributed set-up, training loop) is shared with pretraining through
:mod:`densechange.engine`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from densechange.lazy import lazy_exports

if TYPE_CHECKING:
    from densechange.finetune.checkpoint import load_change_model, save_change_model
    from densechange.finetune.deepcl.losses import ChangeLoss, HardSampleContrastiveLoss, dice_loss, hscl_loss
    from densechange.finetune.deepcl.model import ChangeModel, build_change_model
    from densechange.finetune.inference.predictor import ChangePredictor
    from densechange.finetune.metrics import ConfusionMatrix, change_metrics

# Imported on first use: `densechange vectorize`, the metrics or a scoring worker do not load timm.
_LAZY = {
    "ChangeLoss": ".deepcl.losses",
    "ChangeModel": ".deepcl.model",
    "ChangePredictor": ".inference.predictor",
    "ConfusionMatrix": ".metrics",
    "HardSampleContrastiveLoss": ".deepcl.losses",
    "build_change_model": ".deepcl.model",
    "change_metrics": ".metrics",
    "dice_loss": ".deepcl.losses",
    "hscl_loss": ".deepcl.losses",
    "load_change_model": ".checkpoint",
    "save_change_model": ".checkpoint",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
