"""The README stays true: every config key is documented and every referenced file exists."""
import re
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest

from finetune.config import FinetuneConfig
from pretrain.config import PretrainConfig

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def leaf_keys(schema, prefix=""):
    for f in fields(schema):
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        if is_dataclass(default):
            yield from leaf_keys(type(default), f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}"


def documented(key: str) -> bool:
    """The full key in backticks, or its leaf in backticks on a row that names its parent."""
    if f"`{key}`" in README:
        return True
    parent, leaf = key.rsplit(".", 1)
    return any(
        parent in line and re.search(rf"`\.?{re.escape(leaf)}`", line)
        for line in README.splitlines()
        if line.startswith("|")
    )


@pytest.mark.parametrize("schema", [PretrainConfig, FinetuneConfig])
def test_every_config_key_is_in_the_reference(schema):
    missing = [k for k in leaf_keys(schema) if not documented(k)]
    assert not missing, f"README config reference lacks: {missing}"


def test_readme_commands_point_at_real_files():
    for path in set(re.findall(r"(configs/[\w/]+\.yaml|bench/\w+\.py)", README)):
        assert (REPO / path).is_file(), path
    for target in ("make demo", "make test"):
        assert target in README
    makefile = (REPO / "Makefile").read_text()
    assert "pip install -e '.[dev]'" in makefile and "pytest" in makefile
