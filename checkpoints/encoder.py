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

from .format import CheckpointError
from .fpn import FPN

_REQUIRED_META = ("backbone", "neck", "in_chans")


class Encoder(nn.Module):
    """timm backbone (``self.backbone``) followed by an FPN (``self.neck``).

    Args:
        backbone: timm model name; any model that supports ``features_only``.
        in_chans: input bands.
        neck_channels: channels of every pyramid level.
        out_indices: backbone levels fed to the neck (timm ``out_indices``); (1, 2, 3, 4) are
            C2..C5 of a ResNet.
        pretrained: let timm load its default weights (needs the Hugging Face hub).
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        *,
        in_chans: int = 3,
        neck_channels: int = 256,
        out_indices: tuple[int, ...] = (1, 2, 3, 4),
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans}")
        try:
            self.backbone = timm.create_model(
                backbone,
                features_only=True,
                out_indices=tuple(out_indices),
                in_chans=in_chans,
                pretrained=pretrained,
            )
        except RuntimeError as err:
            if "Unknown model" in str(err) or "features_only" in str(err):
                raise CheckpointError(
                    f"cannot build backbone {backbone!r} with features_only: {err}. "
                    "Pick a timm model name from timm.list_models() that supports features_only."
                ) from err
            raise
        self.backbone_name = backbone
        self.in_chans = in_chans
        self.out_indices = tuple(int(i) for i in out_indices)
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
