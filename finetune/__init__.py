"""DeepCL change-detection finetuning: model and losses, metrics, training, prediction, evaluation.

Entry points::

    python -m finetune --config FILE [key=value ...]              # train (see finetune.train)
    python -m finetune.predict --checkpoint FILE --a A --b B --out OUT
    python -m finetune.evaluate --checkpoint FILE data.root=ROOT [data.split=test]
    python -m finetune.export --checkpoint FILE --out model.onnx [--stacked | --deepness]

The run machinery (config, distributed set-up, training loop) is shared with pretraining through
:mod:`engine`.
"""
from .checkpoint import load_change_model, save_change_model
from .inference import ChangePredictor
from .losses import ChangeLoss, HardSampleContrastiveLoss, dice_loss, hscl_loss
from .metrics import ConfusionMatrix, change_metrics
from .model import ChangeModel, build_change_model

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
