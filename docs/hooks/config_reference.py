"""MkDocs hook: the config reference page, generated from the config dataclasses at build time.

``docs/config.md`` holds a placeholder; this hook replaces it with one table per command schema,
made by :func:`densechange.engine.config_docs.markdown_table`, which reads each key's description
from the comment on its dataclass field line. A key is therefore documented once, beside its
default, and the page cannot drift from the code. The commands come from the
dispatch table (:func:`densechange.engine.commands.walk`), so a new command is documented here by
being in the table; ``tests/test_docs.py`` checks every key of the same schemas has a description.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Document the checkout being built, installed or not: MkDocs restores sys.path after loading a hook,
# so the package is imported here, while this checkout's src/ comes first, and its modules follow it.
sys.path.insert(0, str(ROOT / "src"))
try:
    import densechange  # noqa: F401
finally:
    sys.path.remove(str(ROOT / "src"))

PAGE = "config.md"
PLACEHOLDER = "<!-- config-reference -->"

def schemas() -> list[tuple[str, type]]:
    """``(command, schema class)`` of every command of the ``densechange`` table, in its order."""
    from densechange.engine.commands import walk

    return [(command.load_spec().prog, command.load_spec().schema) for _, command in walk()]


def reference() -> str:
    """The generated part of the page: a section and a table per command."""
    from densechange.engine.config_docs import markdown_table

    sections = []
    for command, schema in schemas():
        sections.append(f"## `{command}`\n\nSchema: `{schema.__module__}.{schema.__qualname__}`.\n\n"
                        f"{markdown_table(schema)}\n")
    return "\n".join(sections)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Fill the placeholder of the config page; every other page passes through unchanged."""
    if page.file.src_uri != PAGE:
        return markdown
    if PLACEHOLDER not in markdown:
        from mkdocs.exceptions import PluginError  # here, so that the tests import this file without MkDocs

        raise PluginError(f"docs/{PAGE} lacks the placeholder {PLACEHOLDER} where the config tables go")
    return markdown.replace(PLACEHOLDER, reference())
