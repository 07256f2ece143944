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

from typing import Any

import timm
import torch
from torch import nn

from densechange.checkpoints.format import CheckpointError
from densechange.checkpoints.fpn import FPN

_REQUIRED_META = ("backbone", "neck", "in_chans")
_PYRAMID_STRIDES = [4, 8, 16, 32]


def _timm_features(name: str, out_indices: tuple[int, ...] | None, in_chans: int, pretrained: bool) -> nn.Module:
    kwargs = {} if out_indices is None else {"out_indices": tuple(out_indices)}
    try:
        return timm.create_model(name, features_only=True, in_chans=in_chans, pretrained=pretrained, **kwargs)
    except RuntimeError as err:
        if "features_only" in str(err):
            raise CheckpointError(f"timm backbone {name!r} does not support features_only: {err}") from err
        raise


def _create_backbone(name: str, out_indices: tuple[int, ...] | None, in_chans: int, pretrained: bool) -> nn.Module:
    """timm ``features_only`` model; ``out_indices=None`` selects the levels at strides 4..32."""
    if not timm.is_model(name):
        raise CheckpointError(f"unknown timm backbone {name!r}; see timm.list_models() for names")
    if out_indices is not None:
        try:
            return _timm_features(name, out_indices, in_chans, pretrained)
        except (IndexError, AssertionError) as err:  # timm's reaction to a level it does not have
            strides = _timm_features(name, None, in_chans, False).feature_info.reduction()
            raise CheckpointError(
                f"backbone {name!r} has no out_indices={tuple(out_indices)}: its levels 0..{len(strides) - 1} "
                f"have strides {strides}; pass out_indices=None to pick the stride 4..32 levels"
            ) from err
    try:  # ResNet-like backbones have strides 4..32 at indices 1..4: one build in the common case
        model = _timm_features(name, (1, 2, 3, 4), in_chans, pretrained)
        if list(model.feature_info.reduction()) == _PYRAMID_STRIDES:
            return model
    except (IndexError, AssertionError):
        pass
    model = _timm_features(name, None, in_chans, False)
    strides = list(model.feature_info.reduction())
    chosen = tuple(i for i, r in enumerate(strides) if r in _PYRAMID_STRIDES)
    if not chosen:
        raise CheckpointError(f"backbone {name!r} has no levels at strides {_PYRAMID_STRIDES} (it has {strides})")
    if chosen == tuple(range(len(strides))) and not pretrained:
        return model
    return _timm_features(name, chosen, in_chans, pretrained)


class Encoder(nn.Module):
    """timm backbone (``self.backbone``) followed by an FPN (``self.neck``).

    Args:
        backbone: timm model name; any model that supports ``features_only``.
        in_chans: input bands.
        neck_channels: channels of every pyramid level.
        out_indices: backbone levels fed to the neck (timm ``out_indices``); (1, 2, 3, 4) are
            C2..C5 of a ResNet. None picks the levels at strides 4, 8, 16 and 32 of any backbone
            (e.g. (0, 1, 2, 3) for ConvNeXt).
        pretrained: let timm load its default weights (needs the Hugging Face hub).
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        *,
        in_chans: int = 3,
        neck_channels: int = 256,
        out_indices: tuple[int, ...] | None = (1, 2, 3, 4),
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        if in_chans < 1:
            raise CheckpointError(f"in_chans (data.in_chans) must be >= 1, got {in_chans}")
        self.backbone = _create_backbone(backbone, out_indices, in_chans, pretrained)
        self.backbone_name = backbone
        self.in_chans = in_chans
        self.out_indices = tuple(int(i) for i in self.backbone.feature_info.out_indices)
        self.feature_channels: list[int] = list(self.backbone.feature_info.channels())
        self.out_strides: list[int] = list(self.backbone.feature_info.reduction())
        self.out_channels = neck_channels
        self.neck = FPN(self.feature_channels, neck_channels)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Backbone levels ``(B, feature_channels[i], H / out_strides[i], W / out_strides[i])``."""
        return list(self.backbone(x))

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """FPN levels, finest first, each ``(B, out_channels, H / out_strides[i], W / ...)``."""
        return self.neck(self.forward_features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Finest pyramid level ``(B, out_channels, H / out_strides[0], W / out_strides[0])``."""
        return self.forward_pyramid(x)[0]

    def metadata(self) -> dict[str, Any]:
        """Everything needed to rebuild this module without its weights (see `from_metadata`)."""
        return {
            "backbone": self.backbone_name,
            "neck": {"type": "fpn", "channels": self.out_channels, "out_indices": list(self.out_indices)},
            "in_chans": self.in_chans,
            "feature_channels": list(self.feature_channels),
            "out_strides": list(self.out_strides),
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> Encoder:
        """A freshly initialised encoder with the architecture recorded in ``meta``."""
        missing = [k for k in _REQUIRED_META if k not in meta]
        if missing:
            raise CheckpointError(f"encoder metadata lacks {missing}; it has {sorted(meta)}")
        neck = meta["neck"]
        if not isinstance(neck, dict) or neck.get("type") != "fpn":
            raise CheckpointError(f"unsupported encoder neck {neck!r}; this version builds neck type 'fpn'")
        return cls(
            meta["backbone"],
            in_chans=int(meta["in_chans"]),
            neck_channels=int(neck.get("channels", 256)),
            out_indices=tuple(neck.get("out_indices", (1, 2, 3, 4))),
        )
