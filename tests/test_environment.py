"""The environment the service reads is documented in one table (`bot.config.ENVIRONMENT`):
the code reads exactly those names, the README lists each, and the production example only
sets names the bot reads."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from bot.config import ENVIRONMENT

ROOT = Path(__file__).resolve().parents[1]
ENV_NAME = re.compile(r"^(SLACK|IMAGEBOT|OS|RACKSPACE)_[A-Z0-9_]+$")
DOCUMENTED = {name for name, _ in ENVIRONMENT}


def names_in_code() -> set[str]:
    """Environment-variable names written as string constants in bot/, outside the table."""
    found: set[str] = set()
    for path in (ROOT / "bot").rglob("*.py"):
        tree = ast.parse(path.read_text())
        skip: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "ENVIRONMENT":
                skip |= {id(n) for n in ast.walk(node)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and ENV_NAME.match(node.value) and id(node) not in skip):
                found.add(node.value)
    return found


def test_the_code_reads_exactly_the_documented_variables() -> None:
    assert names_in_code() == DOCUMENTED


def test_each_variable_has_one_line_and_is_listed_once() -> None:
    assert len(DOCUMENTED) == len(ENVIRONMENT)
    for name, line in ENVIRONMENT:
        assert line and "\n" not in line, name


def test_the_readme_lists_every_variable() -> None:
    readme = (ROOT / "README.md").read_text()
    table = {m.group(1) for m in re.finditer(r"^\| `([A-Z0-9_]+)` \|", readme, re.M)}
    assert table == DOCUMENTED


def test_the_production_example_sets_only_variables_the_bot_reads() -> None:
    text = (ROOT / "examples" / "systemd" / "imagebot.env").read_text()
    set_names = {m.group(1) for m in re.finditer(r"^#?([A-Z][A-Z0-9_]+)=", text, re.M)}
    assert set_names and set_names <= DOCUMENTED, set_names - DOCUMENTED


def test_the_unit_reads_that_file_and_keeps_the_database_private() -> None:
    unit = (ROOT / "examples" / "systemd" / "imagebot.service").read_text()
    settings = dict(line.split("=", 1) for line in unit.splitlines()
                    if "=" in line and not line.startswith("#"))
    assert settings["EnvironmentFile"] == "/etc/imagebot/imagebot.env"
    assert settings["StateDirectoryMode"] == "0700"
    assert settings["ExecStart"].endswith("imagebot run")
    env = (ROOT / "examples" / "systemd" / "imagebot.env").read_text()
    assert "IMAGEBOT_DB=/var/lib/imagebot/" in env  # inside the unit's StateDirectory
