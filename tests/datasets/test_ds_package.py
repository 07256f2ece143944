"""Package surface: the import-name clash guard and the re-exported API."""
from __future__ import annotations

import importlib.metadata

import pytest

import datasets


def test_public_api() -> None:
    assert datasets.IGNORE_INDEX == -1
    assert issubclass(datasets.DatasetError, ValueError)
    for name in datasets.__all__:
        assert hasattr(datasets, name), name


def test_clash_with_another_datasets_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets._refuse_name_clash()  # nothing called "datasets" is installed here
    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: object())
    with pytest.raises(ImportError, match="Hugging Face.*separate virtual environment"):
        datasets._refuse_name_clash()
