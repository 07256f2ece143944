"""The toolkit's image encoder: any timm ``features_only`` backbone plus an FPN neck.

Both stages see the same module: SaDL pretrains it on the finest pyramid level and DeepCL reads
all levels. Everything needed to rebuild it lives in :meth:`Encoder.metadata`, so a checkpoint can
be loaded without the config that produced it.

Example:
    >>> enc = Encoder("resnet18", in_chans=4)
    >>> enc(torch.randn(2, 4, 256, 256)).shape        # P2, stride 4
    torch.Size([2, 256, 64, 64])
    >>> [p.shape[-1] for p in enc.forward_pyramid(torch.randn(1, 4, 256, 256))]
    [64, 32, 16, 8]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import timm
import torch
from torch import nn

from densechange.models.errors import ModelError
from densechange.models.fpn import FPN
from densechange.models.pyramid import SimplePyramid

_REQUIRED_META = ("backbone", "neck", "in_chans")
_PYRAMID_STRIDES = [4, 8, 16, 32]


def _timm_features(name: str, out_indices: tuple[int, ...] | None, in_chans: int, pretrained: bool,
                   args: dict[str, Any]) -> nn.Module:
    """timm ``features_only`` model; transformers get ``dynamic_img_size`` so any crop size the patch allows runs."""
    kwargs = dict(args)
    if out_indices is not None:
        kwargs["out_indices"] = tuple(out_indices)
    try:
        try:  # ViT, Swin and other transformers take any input size this way; CNNs do without
            return timm.create_model(name, features_only=True, in_chans=in_chans, pretrained=pretrained,
                                     dynamic_img_size=True, **kwargs)
        except TypeError as err:
            if "dynamic_img_size" not in str(err):
                raise
            return timm.create_model(name, features_only=True, in_chans=in_chans, pretrained=pretrained, **kwargs)
    except TypeError as err:
        raise ModelError(f"timm backbone {name!r} does not take the arguments {args}: {err}") from err
    except RuntimeError as err:
        if "features_only" in str(err):
            raise ModelError(f"timm backbone {name!r} does not support features_only: {err}") from err
        raise


def _create_backbone(name: str, out_indices: tuple[int, ...] | None, in_chans: int, pretrained: bool,
                     args: dict[str, Any]) -> nn.Module:
    """timm ``features_only`` model; ``out_indices=None`` selects the levels at strides 4..32.

    A plain ViT has one stride (16) at every level: then only its last level is kept, and the
    encoder builds the other strides from it (:class:`densechange.models.pyramid.SimplePyramid`).
    """
    if not timm.is_model(name):
        raise ModelError(f"unknown timm backbone {name!r}; see timm.list_models() for names")
    if out_indices is not None:
        try:
            return _timm_features(name, out_indices, in_chans, pretrained, args)
        except (IndexError, AssertionError) as err:  # timm's reaction to a level it does not have
            strides = _timm_features(name, None, in_chans, False, args).feature_info.reduction()
            raise ModelError(
                f"backbone {name!r} has no out_indices={tuple(out_indices)}: its levels 0..{len(strides) - 1} "
                f"have strides {strides}; pass out_indices=None to pick the stride 4..32 levels"
            ) from err
    try:  # ResNet-like backbones have strides 4..32 at indices 1..4: one build in the common case
        model = _timm_features(name, (1, 2, 3, 4), in_chans, pretrained, args)
        if list(model.feature_info.reduction()) == _PYRAMID_STRIDES:
            return model
    except (IndexError, AssertionError):
        pass
    model = _timm_features(name, None, in_chans, False, args)
    strides = list(model.feature_info.reduction())
    if len(set(strides)) == 1:  # a plain ViT: its last level feeds the simple pyramid
        return _timm_features(name, (model.feature_info.out_indices[-1],), in_chans, pretrained, args)
    chosen = tuple(i for i, r in enumerate(strides) if r in _PYRAMID_STRIDES)
    if not chosen:
        raise ModelError(f"backbone {name!r} has no levels at strides {_PYRAMID_STRIDES} (it has {strides})")
    if chosen == tuple(range(len(strides))) and not pretrained:
        return model
    return _timm_features(name, chosen, in_chans, pretrained, args)


def _patch_size(backbone: nn.Module) -> int:
    """Side that input sizes must be a multiple of (a ViT's patch), 1 when any size runs."""
    inner = getattr(backbone, "model", backbone)
    embed = getattr(inner, "patch_embed", None)
    if embed is None or not getattr(inner, "dynamic_img_size", False) or getattr(embed, "dynamic_img_pad", False):
        return 1
    size = getattr(embed, "patch_size", 1)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


class Encoder(nn.Module):
    """timm backbone (``self.backbone``) followed by an FPN (``self.neck``).

    Args:
        backbone: timm model name; any model that supports ``features_only``: CNNs, Swin, ViT.
        in_chans: input bands.
        neck_channels: channels of every pyramid level.
        out_indices: backbone levels fed to the neck (timm ``out_indices``); (1, 2, 3, 4) are
            C2..C5 of a ResNet. None picks the levels at strides 4, 8, 16 and 32 of any backbone
            (e.g. (0, 1, 2, 3) for ConvNeXt and Swin, the last block of a plain ViT).
        pretrained: let timm load its default weights (needs the Hugging Face hub).
        backbone_args: further keyword arguments of the timm model (e.g. a small Swin's
            ``depths``), recorded in the metadata so a checkpoint rebuilds the same network.

    A plain ViT has one stride-16 map; its strides 4, 8 and 32 come from a
    :class:`~densechange.models.pyramid.SimplePyramid` (``self.pyramid``), whose layers are new
    weights on top of any pretrained ViT. Swin's channels-last levels are read as channels-first.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        *,
        in_chans: int = 3,
        neck_channels: int = 256,
        out_indices: tuple[int, ...] | None = (1, 2, 3, 4),
        pretrained: bool = False,
        backbone_args: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if in_chans < 1:
            raise ModelError(f"in_chans (data.in_chans) must be >= 1, got {in_chans}")
        self.backbone_args = _plain(backbone_args or {})
        self.backbone = _create_backbone(backbone, out_indices, in_chans, pretrained, self.backbone_args)
        self.backbone_name = backbone
        self.in_chans = in_chans
        info = self.backbone.feature_info
        self.out_indices = tuple(int(i) for i in info.out_indices)
        self.channels_last_output = str(getattr(self.backbone, "output_fmt", "NCHW")).endswith("NHWC")
        self.size_multiple = _patch_size(self.backbone)
        strides = list(info.reduction())
        if len(set(strides)) < len(strides):
            raise ModelError(f"backbone {backbone!r} levels {self.out_indices} repeat strides {strides}; pass "
                                  "out_indices=None to pick one level per stride (a plain ViT's last block)")
        if len(strides) == 1:  # one map (a plain ViT's): the simple pyramid builds strides 4..32 from it
            self.pyramid: SimplePyramid | None = SimplePyramid(info.channels()[0], strides[0], backbone)
            self.feature_channels: list[int] = list(self.pyramid.channels)
            self.out_strides: list[int] = list(self.pyramid.strides)
        else:
            self.pyramid = None
            self.feature_channels = list(info.channels())
            self.out_strides = strides
        self.out_channels = neck_channels
        self.neck = FPN(self.feature_channels, neck_channels)

    def check_input_size(self, height: int, width: int, where: str = "the input") -> None:
        """A clear error for sizes the backbone cannot take (a ViT's sides must be multiples of its patch)."""
        m = self.size_multiple
        if m > 1 and (height % m or width % m):
            ok = sorted({max(m, (height // m) * m), (height // m + 1) * m})
            raise ModelError(
                f"{where} is {height}x{width}, but backbone {self.backbone_name!r} takes sides that are multiples of "
                f"its patch size {m} (e.g. {' or '.join(map(str, ok))}); set the crop / tile / window size to one")

    @property
    def resamples_positions(self) -> bool:
        """Whether the backbone resamples a position table to every input size (a plain ViT's ``pos_embed``).

        timm does that at each forward with an antialiased bicubic that ONNX cannot express, so such
        a network exports only at one fixed size (see :meth:`fix_input_size`).
        """
        inner = getattr(self.backbone, "model", self.backbone)
        return getattr(inner, "pos_embed", None) is not None and bool(getattr(inner, "dynamic_img_size", False))

    def fix_input_size(self, height: int, width: int) -> None:
        """Resample the position table once, for ``height x width`` inputs, in place.

        At that size timm then adds the table as it is, so a traced graph holds no resampling and
        gives the same outputs as the dynamic network. Other sizes would resample the already
        resampled table, so call this on a copy that runs only at that size (an ONNX export's).
        """
        from timm.layers import resample_abs_pos_embed

        if not self.resamples_positions:
            return
        self.check_input_size(height, width)
        inner = getattr(self.backbone, "model", self.backbone)
        embed = inner.patch_embed
        # the patch grid of that size (rounded up where the embedding pads the input to whole patches)
        grid = tuple(int(n) for n in embed.dynamic_feat_size((height, width)))
        prefix = 0 if getattr(inner, "no_embed_class", False) else int(getattr(inner, "num_prefix_tokens", 0))
        with torch.no_grad():
            table = resample_abs_pos_embed(inner.pos_embed.detach(), new_size=list(grid),
                                           old_size=list(embed.grid_size), num_prefix_tokens=prefix)
        inner.pos_embed = nn.Parameter(table.to(inner.pos_embed.dtype), requires_grad=False)
        embed.grid_size, embed.img_size = grid, (height, width)
        embed.num_patches = grid[0] * grid[1]

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Backbone levels ``(B, feature_channels[i], H / out_strides[i], W / out_strides[i])``."""
        if self.size_multiple > 1:
            self.check_input_size(int(x.shape[-2]), int(x.shape[-1]))
        feats = list(self.backbone(x))
        if self.channels_last_output:
            feats = [f.permute(0, 3, 1, 2) for f in feats]
        return self.pyramid(feats[-1]) if self.pyramid is not None else feats

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """FPN levels, finest first, each ``(B, out_channels, H / out_strides[i], W / ...)``."""
        return self.neck(self.forward_features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Finest pyramid level ``(B, out_channels, H / out_strides[0], W / out_strides[0])``."""
        return self.forward_pyramid(x)[0]

    def metadata(self) -> dict[str, Any]:
        """Everything needed to rebuild this module without its weights (see `from_metadata`)."""
        neck: dict[str, Any] = {"type": "fpn", "channels": self.out_channels, "out_indices": list(self.out_indices)}
        if self.pyramid is not None:
            neck["pyramid"] = self.pyramid.metadata()
        meta = {
            "backbone": self.backbone_name,
            "neck": neck,
            "in_chans": self.in_chans,
            "feature_channels": list(self.feature_channels),
            "out_strides": list(self.out_strides),
        }
        if self.backbone_args:
            meta["backbone_args"] = dict(self.backbone_args)
        return meta

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> Encoder:
        """A freshly initialised encoder with the architecture recorded in ``meta``."""
        missing = [k for k in _REQUIRED_META if k not in meta]
        if missing:
            raise ModelError(f"encoder metadata lacks {missing}; it has {sorted(meta)}")
        neck = meta["neck"]
        if not isinstance(neck, dict) or neck.get("type") != "fpn":
            raise ModelError(f"unsupported encoder neck {neck!r}; this version builds neck type 'fpn'")
        encoder = cls(
            meta["backbone"],
            in_chans=int(meta["in_chans"]),
            neck_channels=int(neck.get("channels", 256)),
            out_indices=tuple(neck.get("out_indices", (1, 2, 3, 4))),
            backbone_args=meta.get("backbone_args"),
        )
        recorded = neck.get("pyramid")
        built = encoder.pyramid.metadata() if encoder.pyramid is not None else None
        if recorded != built:
            raise ModelError(f"the checkpoint records the pyramid {recorded}, but this version builds {built} "
                                  f"for backbone {meta['backbone']!r}")
        return encoder


def _plain(value: Any) -> Any:
    """JSON-ready copy of timm keyword arguments (mappings as dicts, tuples and config lists as lists), so
    metadata round-trips exactly whatever container the config handed over."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [_plain(v) for v in value]
    return value
