"""Import layering: lower layers never import higher ones (checked by parsing every module)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "forceexp"
LEAVES = ("forceexp.specs", "forceexp.tags", "forceexp.version", "forceexp.checkpoints")

#: (layer, layers it must not import, whether imports under ``TYPE_CHECKING`` are allowed)
RULES = [
    ("core", ("config", "observers", "agents", "execution", "environments"), False),
    ("observers", ("agents",), True),
    ("agents", ("execution",), False),
]


def _imports(path: Path) -> list[tuple[str, bool]]:
    """``(imported module, only under TYPE_CHECKING)`` for every import in ``path``."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test).endswith("TYPE_CHECKING")
        for stmt in block.body
        for node in ast.walk(stmt)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in typing_only) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            # ``from forceexp import tags`` imports the module ``forceexp.tags``
            found += [(f"{node.module}.{a.name}", id(node) in typing_only) for a in node.names]
    return found


def _modules() -> dict[str, Path]:
    """``{dotted module name: file}`` for the whole package (``__init__`` names the package)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts).removesuffix(".__init__")] = path
    return modules


def _is_under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize(("layer", "forbidden", "typing_ok"), RULES)
def test_lower_layers_do_not_import_higher_ones(layer, forbidden, typing_ok):
    bad = [
        f"{module} imports {name}"
        for module, path in _modules().items()
        if _is_under(module, f"forceexp.{layer}")
        for name, typing_only in _imports(path)
        if any(_is_under(name, f"forceexp.{f}") for f in forbidden)
        and not (typing_ok and typing_only)
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaf_modules_import_only_errors(leaf):
    names = [name for name, _ in _imports(_modules()[leaf]) if _is_under(name, "forceexp")]
    assert all(_is_under(name, "forceexp.errors") for name in names), names


def test_the_checker_sees_lazy_and_type_checking_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from forceexp.agents.agent import Agent\n"
        "def f():\n    from forceexp import config\n"
    )
    imports = dict(_imports(source))
    assert imports["forceexp.agents.agent.Agent"] is True
    assert imports["forceexp.config"] is False
