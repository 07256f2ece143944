"""The README and the docs site stay true to the code.

Every config key of every command has a description (the generated reference reads it from the
dataclasses), every file the pages name exists, the registry example is a registry file, the layout
table lists the packages, and every ``densechange`` command line of the README and the docs parses.
``mkdocs build --strict`` (``make docs``) checks links and anchors; these tests need no MkDocs.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib.util
import re
import shlex
from pathlib import Path

import pytest
import yaml

from densechange.engine.commands import dispatch
from densechange.engine.config_docs import describe, markdown_table, undocumented
from densechange.engine.errors import TOOLKIT_ERRORS

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "densechange"
DOCS = REPO / "docs"
README = REPO / "README.md"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]


def _load_hook():
    spec = importlib.util.spec_from_file_location("config_reference_hook", DOCS / "hooks" / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOOK = _load_hook()
SCHEMAS = HOOK.schemas()


# --- the config reference ---------------------------------------------------------------------------

@pytest.mark.parametrize("command, schema", SCHEMAS, ids=[c for c, _ in SCHEMAS])
def test_every_key_of_every_command_has_a_description(command, schema):
    assert not undocumented(schema), f"{command}: keys without a trailing-comment description: {undocumented(schema)}"


def test_the_reference_covers_every_command_of_the_table():
    from densechange.engine.commands import walk

    listed = [command for command, _ in SCHEMAS]
    assert listed == [f"densechange {' '.join(words)}" for words, _ in walk()]
    assert {"densechange pretrain", "densechange finetune", "densechange predict", "densechange weights download"} <= set(listed)


def test_the_reference_page_is_generated_with_a_row_per_key():
    page = (DOCS / "config.md").read_text()
    assert page.count(HOOK.PLACEHOLDER) == 1
    generated = HOOK.reference()
    for command, schema in SCHEMAS:
        section = generated.split(f"## `{command}`", 1)[1].split("\n## ", 1)[0]
        rows = [line for line in section.splitlines() if line.startswith("| `")]
        assert [r.split("`")[1] for r in rows] == [k.name for k in describe(schema)], command


def test_defaults_are_each_command_own():
    """A section built by a factory shows the factory's values, not its class's defaults."""
    from densechange.finetune.config import FinetuneConfig
    from densechange.pretrain.config import PretrainConfig

    finetune = {k.name: k.default for k in describe(FinetuneConfig)}
    pretrain = {k.name: k.default for k in describe(PretrainConfig)}
    assert (finetune["trainer.batch_size"], finetune["trainer.schedule.power"], finetune["run.dir"]) == ("8", "1.0", "runs/finetune")
    assert (pretrain["trainer.batch_size"], pretrain["trainer.schedule.power"], pretrain["run.dir"]) == ("64", "0.9", "runs/pretrain")
    assert (finetune["trainer.optim.decay_norm_and_bias"], pretrain["trainer.optim.decay_norm_and_bias"]) == ("false", "true")
    assert finetune["aug.jitter"] == "[0.3,0.3,0.3,0.05]"


@dataclasses.dataclass
class _Sample:
    split: str = "train"  # a <split>/ folder, logged as pc_* keys, a | b, [0, 1], `code_|_kept`
    plain: int = 3  # nothing to escape


def test_a_description_is_literal_markdown():
    rows = markdown_table(_Sample).splitlines()
    assert rows[2] == ("| `split` | str | `train` | a &lt;split&gt;/ folder, logged as pc\\_\\* keys, a \\| b, "
                       "\\[0, 1\\], `code_\\|_kept` |")
    assert rows[3] == "| `plain` | int | `3` | nothing to escape |"


# --- what the pages name -----------------------------------------------------------------------------

FILE_PATTERN = re.compile(r"(?<![\w/.-])((?:configs|bench|tests|docs|src|datasets|engine|checkpoints|models|pretrain|finetune)"
                          r"/[\w./-]*\.(?:yaml|py|sh|md|png|json))")


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(REPO).as_posix() for p in PAGES])
def test_files_a_page_names_exist(page):
    named = set(FILE_PATTERN.findall(page.read_text()))
    missing = sorted(p for p in named if not (REPO / p).exists() and not (page.parent / p).exists())
    assert not missing, f"{page.relative_to(REPO)} names files that do not exist: {missing}"


def test_readme_is_short_and_keeps_its_promises():
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    for target in ("make demo", "make test"):
        assert target in text
    assert ("Both targets only need `python3` (3.10 or newer) and network access to the Python package index.\n"
            "They create `.venv/` and install the project into it with `pip install -e '.[dev]'`.") in text
    makefile = (REPO / "Makefile").read_text()
    assert "pip install -e '.[dev]'" in makefile and "pytest" in makefile and "mkdocs build --strict" in makefile
    for link in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not link.startswith(("http://", "https://")):
            assert (REPO / link).exists(), link


def test_the_site_navigation_lists_every_page():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())

    def pages(nav):
        for item in nav:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            yield from pages(value) if isinstance(value, list) else [value]

    listed = sorted(pages(config["nav"]))
    on_disk = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert listed == on_disk
    assert config["strict"] is True and "docs/hooks/config_reference.py" in config["hooks"]


def test_registry_example_is_a_valid_registry_file(tmp_path, monkeypatch):
    """The docs' registry example loads, and its field table lists every field an entry knows."""
    from densechange.checkpoints.entry import REQUIRED, Entry
    from densechange.checkpoints.registry import find_entry

    text = (DOCS / "weights.md").read_text()
    section = text[text.index("## Your own registry file"):]
    section = section.split("\n## ", 1)[0]
    example = re.search(r"```json\n(.*?)```", section, re.S).group(1)
    path = tmp_path / "mine.json"
    path.write_text(example)
    monkeypatch.setenv("DENSECHANGE_REGISTRY", str(path))
    entry = find_entry("my_s2_resnet18")
    assert entry is not None and entry.in_chans == 4 and entry.importer == "torchgeo" and len(entry.mean) == 4
    for name in set(Entry.__dataclass_fields__) - {"origin"}:
        assert f"`{name}`" in section, name
    for name in REQUIRED:
        row = next(line for line in section.splitlines() if line.startswith(f"| `{name}`"))
        assert "| yes |" in row, row


def test_layout_table_lists_every_package_and_its_folder():
    text = (DOCS / "layout.md").read_text()
    rows = re.findall(r"^\| `(densechange[\w.]*)` \| `([\w/]+/)` \|", text, re.M)
    packages = {".".join(p.parent.relative_to(SRC.parent).parts) for p in SRC.rglob("__init__.py")}
    assert sorted(name for name, _ in rows) == sorted(packages)
    for name, folder in rows:
        assert (REPO / folder).resolve() == SRC.parent.joinpath(*name.split(".")).resolve(), (name, folder)


# --- every documented command line parses --------------------------------------------------------------

# ``torchrun ... -m MODULE args``: the module forms of the commands
MODULE_COMMANDS = {"densechange.pretrain": "pretrain", "densechange.finetune": "finetune",
                   "densechange.finetune.compare": "compare", "densechange.pretrain.probe": "probe",
                   "densechange.finetune.predict": "predict"}
KEY = re.compile(r"^[A-Za-z_][\w.]*=")


def documented_commands() -> list[tuple[str, list[str]]]:
    """``(where, argv after "densechange")`` for each densechange command line in a ```bash block."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for block in re.finditer(r"```bash\n(.*?)```", text, re.S):
            first = text[: block.start()].count("\n") + 2
            lines = block.group(1).splitlines()
            i = 0
            while i < len(lines):
                where, line = f"{page.relative_to(REPO).as_posix()}:{first + i}", lines[i]
                while line.rstrip().endswith("\\"):  # a command continued on the next line
                    i += 1
                    line = line.rstrip()[:-1] + " " + lines[i]
                i += 1
                words = shlex.split(line, comments=True)
                if words[:1] == ["densechange"]:
                    found.append((where, words[1:]))
                elif "torchrun" in words:
                    rest = words[words.index("torchrun"):]
                    module = rest[rest.index("-m") + 1]
                    assert module in MODULE_COMMANDS, f"{where}: torchrun -m {module} is not a densechange command module"
                    found.append((where, [MODULE_COMMANDS[module], *rest[rest.index("-m") + 2:]]))
    return found


COMMAND_LINES = documented_commands()


def test_the_pages_show_every_kind_of_command():
    shown = {argv[0] for _, argv in COMMAND_LINES}
    assert {"pretrain", "finetune", "predict", "evaluate", "export", "compare", "probe", "check", "tile", "stats",
            "synth", "stack", "weights"} <= shown


@pytest.mark.parametrize("where, argv", COMMAND_LINES, ids=[w for w, _ in COMMAND_LINES])
def test_documented_command_parses(where, argv, monkeypatch, capsys):
    """``--print-config`` resolves the command line and runs nothing: exit 0 and the given keys in its YAML."""
    monkeypatch.chdir(REPO)  # configs/... paths are relative to the repository
    args = argv if "--print-config" in argv else [*argv, "--print-config"]
    try:
        code = dispatch(args)
    except SystemExit as stop:  # argparse and --help exit
        code = stop.code
    except TOOLKIT_ERRORS as err:
        pytest.fail(f"{where}: densechange {shlex.join(argv)}\n  {type(err).__name__}: {err}")
    out, err = capsys.readouterr()
    assert code == 0, f"{where}: densechange {shlex.join(args)} exited {code}\n{err[-1500:]}"
    resolved = yaml.safe_load(out)
    assert isinstance(resolved, dict), f"{where}: --print-config printed no YAML mapping:\n{out[:500]}"
    for word in argv:
        if KEY.match(word):
            node = resolved
            for part in word.split("=", 1)[0].split("."):
                assert isinstance(node, dict) and part in node, f"{where}: {word.split('=')[0]} not in the printed config"
                node = node[part]
