"""Help text and the README reference are generated from the one table and agree with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import commands
from commands import readme
from commands.grammar import TABLE, Spec
from commands.text import slack_escape

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_block_matches_the_grammar() -> None:
    document = README.read_text(encoding="utf-8")
    assert readme.current_block(document) == commands.reference_markdown(), (
        "README command reference is stale: run .venv/bin/python -m commands.readme")


def test_reference_covers_every_command_option_and_example() -> None:
    text = commands.reference_markdown()
    for spec in TABLE:
        assert f"### `/image {spec.name}`" in text
        for line in spec.usage_lines:
            assert line in text
        for option in spec.options:
            assert f"`{option.flag}" in text
        for example in spec.examples:
            assert f"/image {example}\n" in text


@pytest.mark.parametrize("spec", TABLE, ids=lambda spec: spec.name)
def test_examples_parse_to_their_command(spec: Spec) -> None:
    assert spec.examples
    for example in spec.examples:
        assert type(commands.parse(example)).command == spec.name


@pytest.mark.parametrize("spec", TABLE, ids=lambda spec: spec.name)
def test_usage_mentions_every_option(spec: Spec) -> None:
    assert (spec.build is None) != (spec.raw is None)
    for option in spec.options:
        assert option.flag in spec.usage


def test_help_overview_lists_every_usage_line() -> None:
    overview = commands.help_text()
    assert overview == commands.help_text("  ")
    for spec in TABLE:
        for line in spec.usage_lines:
            assert f"`{slack_escape(line)}`" in overview
        for line, summary in spec.described_forms:
            assert f"`{slack_escape(line)}` — {slack_escape(summary)}" in overview
    assert "/image help &lt;command&gt;" in overview
    assert "<" not in overview and ">" not in overview  # Slack would read them as links


def test_help_overview_describes_each_form_on_its_own_line() -> None:
    # Issue 19: the schedule description sat on the `off` line; now every line says what the
    # form on it does, and no line is left without a description.
    lines = [line for line in commands.help_text().splitlines() if line.startswith("• ")]
    assert len(lines) == sum(len(spec.forms) for spec in TABLE)
    assert all(" — " in line for line in lines)
    by_form = {line.split("` — ")[0]: line.split("` — ")[1] for line in lines}
    assert by_form["• `/image schedule &lt;target&gt; off"] == ("Stop imaging a server or a fleet on a schedule.")
    [daily] = [text for form, text in by_form.items()
               if form.startswith("• `/image schedule &lt;target&gt; daily [at HH:MM]")]
    assert "every day" in daily and "Stop" not in daily
    assert by_form["• `/image cancel &lt;job-id&gt;"].startswith("Cancel a job")


def test_dashdash_help_is_the_overview() -> None:
    for text in ("--help", "-h"):
        assert commands.parse(text) == commands.parse("help") == commands.Help()


def test_help_for_one_command() -> None:
    text = commands.help_text("Schedule")
    assert text.count("• `/image schedule &lt;target&gt;") == 4  # daily, weekly, off, operations
    assert text.count("• `/image schedule &lt;server&gt;") == 2  # the forms with --native
    assert "`--tz ZONE`" in text and "Examples:" in text
    assert "/image schedule db-2 weekly sat at 23:00 --keep 4" in text
    assert "create" not in text.split("Examples:")[0].lower().replace("changing", "")


def test_help_for_unknown_topic_falls_back_to_the_overview() -> None:
    text = commands.help_text("frobnicate")
    assert text.startswith("There is no command `frobnicate`.")
    assert commands.help_text() in text


def test_help_request_topic_renders() -> None:
    request = commands.parse("help cancel")
    assert isinstance(request, commands.Help)
    assert commands.help_text(request.topic).startswith("*`/image cancel`*")


def _doc(block: str) -> str:
    return f"# T\n\nintro\n{readme.START}\n{block}{readme.END}\n\ntail\n"


def test_readme_cli_rewrites_only_the_block(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    path.write_text(_doc("old stuff\n"), encoding="utf-8")
    assert readme.main([str(path), "--check"]) == 1
    assert "old stuff" in path.read_text(encoding="utf-8")  # --check writes nothing
    assert readme.main([str(path)]) == 0
    assert path.read_text(encoding="utf-8") == _doc(commands.reference_markdown())
    assert readme.main([str(path), "--check"]) == 0


def test_readme_cli_without_markers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "README.md"
    path.write_text("no markers\n", encoding="utf-8")
    assert readme.main([str(path)]) == 2
    assert "markers" in capsys.readouterr().err
    assert readme.main([str(tmp_path / "missing.md")]) == 2


def test_reference_anchors_match_headings() -> None:
    text = commands.reference_markdown()
    for anchor in re.findall(r"\(#(image-[a-z]+)\)", text):
        assert f"### `/image {anchor.removeprefix('image-')}`" in text
