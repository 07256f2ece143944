"""The change model as an ONNX graph, in three forms, with the normalisation inside.

- ``pair``: inputs ``a`` and ``b`` ``(N, C, H, W)``, outputs ``logits`` ``(N, K, H, W)`` and, with
  the metric branch, ``distance`` ``(N, 1, H/4, W/4)``; batch and size are dynamic (H and W
  multiples of the network stride).
- ``stacked``: one input ``image`` ``(N, 2C, H, W)`` (date A's bands, then date B's), the same
  outputs, for tools that take one raster.
- ``deepness``: the stacked input at a fixed tile size (the QGIS Deepness plugin reads the tile
  size from the input shape), one output ``probabilities`` ``(N, K, S, S)``, the softmax of the
  logits, as that plugin's segmentation models give.

A plain ViT exports every form at one fixed size, the window: timm resamples its position table to
each input size with an antialiased bicubic that ONNX cannot express, so the exported copy gets the
table resampled once for the window (:meth:`~densechange.models.encoder.Encoder.fix_input_size`).

Every form takes pixels in the checkpoint's units, the values :func:`densechange.datasets.to_float_image`
gives: integer rasters divided by their dtype's maximum (uint8 / 255, which is also what the
Deepness plugin feeds a model), float rasters as stored. The model's mean/std normalisation is
part of the graph.

The graph is traced with PyTorch's TorchScript-based exporter: it needs no package beyond
``onnx``, and it keeps the sizes dynamic through the shape arithmetic of the upsampling layers.

Example:
    >>> proto = export_graph(model, "pair")
    >>> [i.name for i in proto.graph.input]
    ['a', 'b']
"""
from __future__ import annotations

import copy
import io
import warnings
from typing import Any

import torch
from torch import nn

from densechange.checkpoints.errors import CheckpointError
from densechange.finetune.deepcl.model import ChangeModel

FORMS = ("pair", "stacked", "deepness")
OPSET = 17


class PairGraph(nn.Module):
    """``(a, b) -> logits[, distance]``: the model with tuple outputs, as an exporter wants them."""

    def __init__(self, model: ChangeModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(a, b)
        return (out["logits"],) if out["distance"] is None else (out["logits"], out["distance"])


class StackedGraph(PairGraph):
    """``image (N, 2C, H, W) -> logits[, distance]``: both dates' bands in one input, A's first."""

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        c = self.model.in_chans
        return super().forward(image[:, :c], image[:, c:])


class DeepnessGraph(StackedGraph):
    """``image (N, 2C, S, S) -> probabilities (N, K, S, S)``: one output, the class softmax."""

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        return (torch.softmax(super().forward(image)[0], dim=1),)


def graph_for(model: ChangeModel, form: str) -> PairGraph:
    """The module that ``form`` exports, in eval mode (the exporter restores the wrapper's own mode)."""
    if form not in FORMS:
        raise ValueError(f"ONNX form '{form}'; valid values: {', '.join(FORMS)}")
    cls = {"pair": PairGraph, "stacked": StackedGraph, "deepness": DeepnessGraph}[form]
    return cls(model.eval()).eval()


def input_names(form: str) -> list[str]:
    return ["a", "b"] if form == "pair" else ["image"]


def output_names(form: str, has_distance: bool) -> list[str]:
    if form == "deepness":
        return ["probabilities"]
    return ["logits", "distance"] if has_distance else ["logits"]


def sample_inputs(model: ChangeModel, form: str, batch: int, height: int, width: int,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    """Random inputs in [0, 1] of one size, shaped for ``form``."""
    c = model.in_chans
    a = torch.rand(batch, c, height, width, generator=generator)
    b = torch.rand(batch, c, height, width, generator=generator)
    return (a, b) if form == "pair" else (torch.cat([a, b], 1),)


def fixed_size(model: ChangeModel, form: str) -> bool:
    """Whether ``form`` of ``model`` exports at one fixed size: the Deepness form, and any plain ViT."""
    return form == "deepness" or model.encoder.resamples_positions


def _dynamic_axes(form: str, names_out: list[str], fixed: bool) -> dict[str, dict[int, str]]:
    if fixed:
        return {name: {0: "batch"} for name in [*input_names(form), *names_out]}
    spatial = {0: "batch", 2: "height", 3: "width"}
    axes = {name: dict(spatial) for name in input_names(form)}
    axes["logits"] = dict(spatial)
    if "distance" in names_out:
        axes["distance"] = {0: "batch", 2: "distance_height", 3: "distance_width"}
    return axes


def export_graph(model: ChangeModel, form: str, size: int | None = None, opset: int = OPSET) -> Any:
    """Trace ``model`` in ``form`` to an ``onnx.ModelProto``.

    Args:
        size: the side of the traced input; the fixed size of the ``deepness`` form and of a plain
            ViT (see :func:`fixed_size`; default: twice the stride, the smallest size whose every
            level has two pixels).
        opset: ONNX opset of the graph.
    """
    import onnx

    size = size or 2 * model.stride
    fixed = fixed_size(model, form)
    if model.encoder.resamples_positions:
        model = copy.deepcopy(model)
        model.encoder.fix_input_size(size, size)
    graph = graph_for(model, form)
    names_out = output_names(form, model.metric_head is not None)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of the torch.export one, which needs onnxscript;
        # its tracer warns about every shape it turns into arithmetic, which is what keeps the sizes dynamic
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(graph, sample_inputs(model, form, 1, size, size), buffer, dynamo=False,
                              opset_version=opset, input_names=input_names(form), output_names=names_out,
                              dynamic_axes=_dynamic_axes(form, names_out, fixed), do_constant_folding=True)
        except torch.onnx.errors.UnsupportedOperatorError as err:
            raise CheckpointError(f"the {model.encoder.backbone_name!r} change model uses an operation that ONNX "
                                  f"opset {opset} cannot express, so it cannot be exported: {err}. Predict with "
                                  "the .safetensors checkpoint instead.") from err
    proto = onnx.load_from_string(buffer.getvalue())
    # the tracer leaves the class axis (and the sides of a fixed-size graph) symbolic: state them
    for output in proto.graph.output:
        dims = output.type.tensor_type.shape.dim
        if output.name in ("logits", "probabilities"):
            dims[1].dim_value = model.num_classes
        if fixed:
            side = size // int(model.encoder.out_strides[0]) if output.name == "distance" else size
            dims[2].dim_value = dims[3].dim_value = side
    return proto
