"""The dependency rules of the developers' guide, read from the source with `ast` (nothing is
imported, so a module's import side effects cannot hide or fake an edge):

- `commands/` is pure: it imports only the standard library and itself;
- the features and the store (`bot/imaging`, `bot/scheduling`, `bot/store`) never import the
  Slack adapter `bot/slack`;
- nothing in `bot/` imports the simulator `sandbox/` (its CLI verbs arrive as entry points);
- no module in `bot/` is over 500 lines.

Every import counts wherever it stands: inside a function, under `TYPE_CHECKING`, or spelled
as `__import__("x")` / `importlib.import_module("x")` with a literal name."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 500
NOT_SLACK = ("bot/imaging", "bot/scheduling", "bot/store")


def module_name(path: Path) -> str:
    """The dotted name of a source file under ROOT (`bot/store/__init__.py` -> `bot.store`)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, module: str, *, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every import in `tree`, the source of `module`.

    `from a import b` yields both `a` and `a.b` (b may be a submodule); relative imports are
    resolved against `module`'s package; a dynamic import of a non-literal name yields
    `<dynamic>`, which no rule allows."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            found.append((node.lineno, source))
            found += [(node.lineno, f"{source}.{alias.name}") for alias in node.names
                      if alias.name != "*"]
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func):
            arg = node.args[0] if node.args else None
            found.append((node.lineno, arg.value if isinstance(arg, ast.Constant)
                          and isinstance(arg.value, str) else "<dynamic>"))
    return found


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def sources(folder: str) -> list[Path]:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"the scan must see {folder}/"
    return files


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return imported(tree, module_name(path), is_package=path.name == "__init__.py")


def offenders(folder: str, refused: str) -> list[str]:
    """`file:line: name` for every import under `folder` that `refused(name)` turns down."""
    return [f"{path.relative_to(ROOT)}:{line}: {name}"
            for path in sources(folder) for line, name in imports_of(path)
            if _refused(refused, name)]


def _refused(rule: str, name: str) -> bool:
    root = name.split(".")[0]
    if rule == "stdlib":
        return root not in sys.stdlib_module_names and root != "commands"
    return name == rule or name.startswith(rule + ".")


def test_commands_imports_only_stdlib_and_itself() -> None:
    assert len(sources("commands")) >= 5
    assert offenders("commands", "stdlib") == []


@pytest.mark.parametrize("folder", NOT_SLACK)
def test_features_and_the_store_never_import_the_slack_adapter(folder: str) -> None:
    assert offenders(folder, "bot.slack") == []


def test_nothing_in_bot_imports_the_sandbox() -> None:
    assert offenders("bot", "sandbox") == []


def test_no_module_in_bot_is_over_500_lines() -> None:
    lengths = {str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
               for path in sources("bot")}
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}


def test_the_scan_resolves_every_spelling_of_an_import() -> None:
    tree = ast.parse(
        "import os\nfrom bot.errors import X\nimport httpx.a\nfrom . import y\n"
        "from ..slack.web import SlackWeb\nfrom bot import slack\n"
        "def f():\n    import sandbox.system\n    __import__('yaml')\n"
        "    importlib.import_module('sandbox.cloud')\n    import_module(name)\n")
    names = [name for _, name in imported(tree, "bot.scheduling.service")]
    assert names == ["os", "bot.errors", "bot.errors.X", "httpx.a", "bot.scheduling",
                     "bot.scheduling.y", "bot.slack.web", "bot.slack.web.SlackWeb", "bot",
                     "bot.slack", "sandbox.system", "yaml", "sandbox.cloud", "<dynamic>"]
    assert [n for n in names if _refused("bot.slack", n)] == [
        "bot.slack.web", "bot.slack.web.SlackWeb", "bot.slack"]
    assert [n for n in names if _refused("sandbox", n)] == ["sandbox.system", "sandbox.cloud"]
    assert [n for n in names if _refused("stdlib", n)] == [
        "bot.errors", "bot.errors.X", "httpx.a", "bot.scheduling", "bot.scheduling.y",
        "bot.slack.web", "bot.slack.web.SlackWeb", "bot", "bot.slack", "sandbox.system",
        "yaml", "sandbox.cloud", "<dynamic>"]
    # Not a prefix match on text: `bot.slacker` is not `bot.slack`.
    assert not _refused("bot.slack", "bot.slacker")


def test_a_package_face_resolves_relative_imports_inside_itself() -> None:
    tree = ast.parse("from .db import Store\nfrom .. import slack\n")
    names = [name for _, name in imported(tree, "bot.store", is_package=True)]
    assert names == ["bot.store.db", "bot.store.db.Store", "bot", "bot.slack"]
    assert module_name(ROOT / "bot" / "store" / "__init__.py") == "bot.store"
