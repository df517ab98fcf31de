"""The shape of the project: package folders, install mapping and dependency direction.

Dependency direction (CONVENTIONS.md): crypto <- policies <- audit <- scanners <- gateway.
A package may import only packages to its right.  Checked from the source with ``ast``
(import-linter cannot walk setuptools' editable namespace finder).
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["gateway", "scanners", "audit", "policies", "crypto"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            # relative imports: resolve against the file's package folder
            rel = path.relative_to(ROOT).parent.parts
            base = rel[: len(rel) - (node.level - 1)]
            mod = ".".join(("ztgw", *base, *(node.module.split(".") if node.module else [])))
            names.add(mod)
    return names


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_imports_only_lower_layers(layer: str) -> None:
    allowed = set(LAYERS[LAYERS.index(layer):])
    bad = []
    for path in (ROOT / layer).rglob("*.py"):
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "ztgw" and len(parts) > 1 and parts[1] not in allowed:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def test_every_package_folder_is_listed_for_install() -> None:
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(conf["tool"]["setuptools"]["packages"])
    found = set()
    for layer in LAYERS:
        for init in (ROOT / layer).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT).parts
            found.add(".".join(("ztgw", *rel)))
    missing = found - listed
    assert not missing, f"package folders not listed in pyproject packages: {sorted(missing)}"
    stale = listed - found
    assert not stale, f"listed packages without a folder: {sorted(stale)}"
