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
from densechange.finetune.checkpoint import load_change_model, save_change_model
from densechange.finetune.inference.predictor import ChangePredictor
from densechange.finetune.deepcl.losses import ChangeLoss, HardSampleContrastiveLoss, dice_loss, hscl_loss
from densechange.finetune.metrics import ConfusionMatrix, change_metrics
from densechange.finetune.deepcl.model import ChangeModel, build_change_model

__all__ = [
    "ChangeLoss",
    "ChangeModel",
    "ChangePredictor",
    "ConfusionMatrix",
    "HardSampleContrastiveLoss",
    "build_change_model",
    "change_metrics",
    "dice_loss",
    "hscl_loss",
    "load_change_model",
    "save_change_model",
]
