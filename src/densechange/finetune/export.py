"""``densechange export``: a finetuned change model as ONNX, for ONNX Runtime, TensorRT and QGIS (Deepness).

    densechange export checkpoint=RUN/best.safetensors out=model.onnx                 # (a, b) -> logits, distance
    densechange export checkpoint=RUN/best.safetensors out=model.onnx form=stacked    # one 2C-band input
    densechange export checkpoint=RUN/best.safetensors out=change_qgis.onnx form=deepness

What is written and how it is verified: :mod:`densechange.finetune.onnx.export`.
"""
from __future__ import annotations

from typing import Sequence

from densechange.checkpoints.format import trust_edited_files
from densechange.engine.cli import CommandSpec, parse_command, run_cli
from densechange.finetune.config import ExportConfig
from densechange.finetune.onnx.export import Exported, export_checkpoint
from densechange.finetune.onnx.graph import FORMS

__all__ = ["Exported", "export_checkpoint", "main"]

SPEC = CommandSpec(
    "densechange export",
    "Export a change model to ONNX, verified against PyTorch. The deepness form (the QGIS Deepness plugin) is stacked, "
    "a fixed tile of window.size pixels with probabilities out, and carries the plugin's metadata keys.",
    ExportConfig,
    required=("checkpoint", "out"),
    choices={"form": FORMS},
    examples=("densechange export checkpoint=RUN/best.safetensors out=model.onnx",
              "densechange export checkpoint=RUN/best.safetensors out=change_qgis.onnx form=deepness"),
)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_command(SPEC, argv)
    if cfg is None:  # --help or --print-config
        return 0
    w = cfg.window
    with trust_edited_files(cfg.trust_edited):
        done = export_checkpoint(cfg.checkpoint, cfg.out, form=cfg.form, window=w.size, overlap=w.overlap,
                                 margin=w.margin, resolution_cm=cfg.resolution)
    for note in done.notes:
        print(f"note: {note}")
    print(f"{done.path}: {done.form} form, ONNX Runtime matches PyTorch within {done.max_difference:.2g}")
    return 0


if __name__ == "__main__":
    run_cli(main)
