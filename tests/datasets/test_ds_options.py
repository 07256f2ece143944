"""The readers' and tiler's settings objects check their values when built, once for every reader."""
import numpy as np
import pytest

from densechange.datasets import ChangeOptions, DatasetError, ImageMaskOptions
from densechange.datasets.tools.tile import TileSpec


@pytest.mark.parametrize("options", [ImageMaskOptions, ChangeOptions])
@pytest.mark.parametrize("bad, match", [(dict(crop_size=0), "crop_size=0"), (dict(crop_size=2.5), "crop_size=2.5"),
                                        (dict(seed=-1), "seed=-1")])
def test_both_readers_share_the_crop_and_seed_checks(options, bad, match):
    with pytest.raises(DatasetError, match=match):
        options(**bad)


def test_options_keep_plain_integers():
    options = ChangeOptions(crop_size=np.int64(64), seed=np.int32(3))
    assert (options.crop_size, options.seed) == (64, 3) and type(options.crop_size) is int and type(options.seed) is int


@pytest.mark.parametrize("bad, match", [(dict(mask_mode="binary"), "mask_mode='binary' is not one of"),
                                        (dict(num_classes=1), "at least 2 classes"),
                                        (dict(mask_mode="binary255", num_classes=3), "contradicts mask_mode")])
def test_mask_options_check_the_mask_convention(bad, match):
    with pytest.raises(DatasetError, match=match):
        ImageMaskOptions(**bad)


@pytest.mark.parametrize("bad, match", [(dict(size=8), "size=8"), (dict(size=32, overlap=32), "overlap=32"),
                                        (dict(fmt="jpg"), "format=jpg")])
def test_tile_spec_checks_the_grid_and_format(bad, match):
    with pytest.raises(DatasetError, match=match):
        TileSpec(**bad)
