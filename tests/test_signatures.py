"""No function of the toolkit takes more than 8 parameters: related values travel as one config or settings object.

Parameters are counted from the source (``ast``): positional, keyword-only, ``*args`` and ``**kwargs``
each count one, and a method's ``self`` or ``cls`` does not count. Dataclass constructors are
generated, so they never appear in the source and are not counted; a dataclass is how a long list of
values becomes one parameter.
"""
import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "densechange"
LIMIT = 8

# Functions allowed more than LIMIT parameters, each "<path under src/densechange>::<qualified name>"
# with its reason in a comment (none today); test_the_allow_list_is_not_stale fails once an entry
# meets the limit.
ALLOWED: set[str] = set()


def parameter_count(node: ast.FunctionDef | ast.AsyncFunctionDef, in_class: bool) -> int:
    """Parameters a caller passes: every argument, ``*args`` and ``**kwargs`` one each, less ``self`` / ``cls``."""
    args = node.args
    named = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    count = len(named) + (args.vararg is not None) + (args.kwarg is not None)
    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)
    bound = [*args.posonlyargs, *args.args]
    if in_class and not static and bound and bound[0].arg in ("self", "cls"):
        count -= 1
    return count


def functions(tree: ast.AST, prefix: str = "", in_class: bool = False):
    """``(qualified name, node, in_class)`` of every function, nested ones and methods included."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield f"{prefix}{child.name}", child, in_class
            yield from functions(child, f"{prefix}{child.name}.", False)
        elif isinstance(child, ast.ClassDef):
            yield from functions(child, f"{prefix}{child.name}.", True)
        else:
            yield from functions(child, prefix, in_class)


def counts() -> dict[str, int]:
    """``"<path>::<name>" -> parameters`` for every function under src/densechange."""
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for name, node, in_class in functions(tree):
            out[f"{path.relative_to(SRC).as_posix()}::{name}"] = parameter_count(node, in_class)
    return out


def test_the_counter_counts_what_a_caller_passes():
    source = '''
def plain(a, b=1, *rest, c, **extra): ...
class Thing:
    def method(self, a, b): ...
    @classmethod
    def build(cls, a): ...
    @staticmethod
    def helper(a, b): ...
    def outer(self):
        def inner(x, y, z): ...
'''
    found = {name: parameter_count(node, in_class) for name, node, in_class in functions(ast.parse(source))}
    assert found == {"plain": 5, "Thing.method": 2, "Thing.build": 1, "Thing.helper": 2, "Thing.outer": 0,
                     "Thing.outer.inner": 3}


def test_no_function_takes_more_than_eight_parameters():
    found = counts()
    assert len(found) > 500  # the scan reaches the whole package
    over = sorted(f"{name} ({n} parameters)" for name, n in found.items() if n > LIMIT and name not in ALLOWED)
    assert not over, ("pass a config section or a small settings dataclass instead of more than "
                      f"{LIMIT} parameters: " + "; ".join(over))


def test_the_allow_list_is_not_stale():
    found = counts()
    stale = sorted(name for name in ALLOWED if found.get(name, 0) <= LIMIT)
    if stale:
        pytest.fail(f"remove from ALLOWED in {Path(__file__).name}, they meet the limit or are gone: {', '.join(stale)}")
