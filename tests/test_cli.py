"""`imagebot`'s verbs: the bot's own, and the sandbox's, found as `imagebot.verbs` entry points
of the installed package (pyproject.toml), so that bot/cli.py never imports sandbox/."""

from __future__ import annotations

import argparse
from importlib.metadata import EntryPoint, EntryPoints

import pytest

from bot import cli
from bot.config import ENVIRONMENT


def verbs(parser: argparse.ArgumentParser) -> list[str]:
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(sub.choices)


def test_the_sandbox_verbs_come_from_the_installed_entry_points() -> None:
    points = {p.name: p.value for p in cli.entry_points(group=cli.VERBS_GROUP)}
    assert points == {"sandbox": "sandbox.cli:add_sandbox",
                      "cloud-sim": "sandbox.cli:add_cloud_sim"}
    parser = cli.build_parser()
    assert verbs(parser) == ["cloud", "run", "cloud-sim", "sandbox"]
    sim = parser.parse_args(["cloud-sim", "--port", "0", "--api", "rackspace-legacy"])
    assert (sim.port, sim.api, sim.handler.__module__) == (0, "rackspace-legacy", "sandbox.cli")
    box = parser.parse_args(["sandbox", "--script", "examples/tour.txt", "--no-web"])
    assert (box.script, box.no_web, box.speed) == ("examples/tour.txt", True, 20.0)


def test_a_verb_that_cannot_be_loaded_is_named_and_the_others_still_work(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    group = cli.VERBS_GROUP
    broken = EntryPoints([
        EntryPoint("gone", "no_such_package.cli:add", group),
        EntryPoint("typo", "sandbox.cli:add_no_such_verb", group),
        EntryPoint("cloud-sim", "sandbox.cli:add_cloud_sim", group)])
    monkeypatch.setattr(cli, "entry_points", lambda group: broken)
    parser = cli.build_parser()
    assert verbs(parser) == ["cloud", "run", "cloud-sim"]
    err = capsys.readouterr().err
    assert "verb 'gone' (no_such_package.cli:add) not loaded" in err
    assert "verb 'typo' (sandbox.cli:add_no_such_verb) not loaded" in err
    run = parser.parse_args(["run", "--http", "--port", "0"])
    assert (run.handler, run.http, run.port) == (cli._run, True, 0)


def test_no_verb_is_a_usage_error_with_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: imagebot") and "run" in err and "cloud" in err
    assert cli.main(["cloud"]) == 2  # a verb group without its action: that group's help
    assert capsys.readouterr().err.startswith("usage: imagebot cloud")


def test_run_help_explains_the_modes_and_lists_every_variable(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["run", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "Socket Mode (default)" in out and "HTTP (--http)" in out
    assert "App-Level Tokens" in out and "connections:write" in out
    listed = out.split("environment variables:\n", 1)[1].splitlines()
    # One line each, in the table's order, with its description.
    assert [text.split(None, 1) for text in listed] == [[n, d] for n, d in ENVIRONMENT]
    options = {a.dest: a.help for a in cli.build_parser()._subparsers._group_actions[0]  # type: ignore[union-attr]
               .choices["run"]._actions}
    for dest in ("http", "host", "port", "cloud"):
        assert options[dest], dest


def test_every_verb_that_reads_clouds_yaml_takes_cloud() -> None:
    """The "several clouds defined; choose one with --cloud or OS_CLOUD" error
    (bot/cloud/config.py) may come from any of these, so each must have --cloud."""
    parser = cli.build_parser()
    assert parser.parse_args(["run", "--cloud", "lab"]).cloud == "lab"
    assert parser.parse_args(["cloud", "check", "--cloud", "lab"]).cloud == "lab"
    assert parser.parse_args(["cloud", "show", "--cloud", "lab"]).cloud == "lab"
