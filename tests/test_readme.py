"""The README stays true: every config key is documented and every referenced file exists."""
import re
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest

from densechange.finetune.config import FinetuneConfig
from densechange.pretrain.config import PretrainConfig

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


def test_registry_example_is_a_valid_registry_file(tmp_path, monkeypatch):
    """The README's registry example loads, and its field table lists every field an entry knows."""
    from densechange.checkpoints.entry import REQUIRED, Entry
    from densechange.checkpoints.registry import find_entry

    section = README[README.index("### Your own registry file"):]
    example = re.search(r"```json\n(.*?)```", section, re.S).group(1)
    path = tmp_path / "mine.json"
    path.write_text(example)
    monkeypatch.setenv("DENSECHANGE_REGISTRY", str(path))
    entry = find_entry("my_s2_resnet18")
    assert entry is not None and entry.in_chans == 4 and entry.importer == "torchgeo" and len(entry.mean) == 4
    table = section[: section.index("\n## ")]
    for name in set(Entry.__dataclass_fields__) - {"origin"}:
        assert f"`{name}`" in table, name
    for name in REQUIRED:
        row = next(line for line in table.splitlines() if line.startswith(f"| `{name}`"))
        assert "| yes |" in row, row


def test_layout_table_matches_the_folders():
    """Every package folder of the project has a row in the README's layout table, and every row exists."""
    section = README[README.index("## Layout"):]
    rows = re.findall(r"^\| `([\w/.]+)` \|", section, re.M)
    assert rows, "no layout table"
    for row in rows:
        assert (REPO / row.rstrip("/")).exists(), row
    packages = {p.parent.relative_to(REPO).as_posix() + "/" for p in REPO.glob("*/**/__init__.py")
                if not any(part.startswith(".") or part in ("tests", "build") or part.endswith(".egg-info")
                           for part in p.relative_to(REPO).parts)}
    missing = sorted(p for p in packages if p not in {r if r.endswith("/") else r + "/" for r in rows})
    assert not missing, f"README layout table lacks: {missing}"
