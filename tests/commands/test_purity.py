"""commands/ is pure: it imports only the standard library and itself."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "commands"


def _imported_roots(tree: ast.AST) -> list[tuple[int, str]]:
    roots: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                roots.append((node.lineno, node.module.split(".")[0]))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            roots.append((node.lineno, "__import__()"))
    return roots


def test_commands_imports_only_stdlib_and_itself() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) >= 5, "the scan must see the package"
    allowed = set(sys.stdlib_module_names) | {"commands"}
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{line}: {root}"
                 for path in files
                 for line, root in _imported_roots(ast.parse(path.read_text(encoding="utf-8")))
                 if root not in allowed]
    assert offenders == []


def test_the_scan_catches_a_foreign_import() -> None:
    tree = ast.parse("import os\nfrom bot.errors import X\nimport httpx.a\nfrom . import y\n")
    roots = [root for _, root in _imported_roots(tree)]
    assert roots == ["os", "bot", "httpx"]
    assert {"bot", "httpx"} - set(sys.stdlib_module_names) == {"bot", "httpx"}
