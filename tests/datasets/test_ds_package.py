"""Package surface: the re-exported API of densechange.datasets."""
from __future__ import annotations

import densechange.datasets as datasets


def test_public_api() -> None:
    assert datasets.IGNORE_INDEX == -1
    assert issubclass(datasets.DatasetError, ValueError)
    for name in datasets.__all__:
        assert hasattr(datasets, name), name
