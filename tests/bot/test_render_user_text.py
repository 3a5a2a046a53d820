"""User text in rich places: no fake formatting, lines, quotes, mentions or bidi tricks.
Payloads are checked with slack_sdk's own Block Kit models too."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta

import pytest
from slack_sdk.models.blocks import Block

from bot import blocks
from bot.imaging import jobs
from bot.imaging import messages as render
from bot.scheduling.messages import approval_message, run_failed_alert
from tests.bot.test_render_schedules import NOW, request

FORGED = "typo\n:white_check_mark: *Approved* by <@U0BOB> at 10:00 UTC"
BIDI = "invoice\u202egnp.exe\u200b\u2066x\u2069\ufeff"


def blocks_valid(payload: dict) -> None:
    for raw in payload.get("blocks", []):
        block = Block.parse(raw)
        assert block is not None
        block.validate_json()  # slack_sdk raises SlackObjectFormationError on a bad block
        assert block.to_dict() == raw


def test_a_reject_reason_cannot_forge_an_approved_line() -> None:
    view = request(status="rejected", decided_by="U0CAROL", decided_at=NOW, reason=FORGED)
    payload = approval_message(view, NOW)
    blocks_valid(payload)
    [outcome] = [b["text"]["text"] for b in payload["blocks"]
                 if b["type"] == "section" and "Rejected" in b["text"]["text"]]
    assert "\n" not in outcome  # the reason stays on the Rejected line
    assert outcome.count("*") == 2  # only our own *Rejected*
    assert "<@U0BOB>" not in outcome and "&lt;@U0BOB&gt;" in outcome
    assert "Approved" in outcome and "*Approved*" not in outcome


@pytest.mark.parametrize("text", ["*bold*", "_it_", "~gone~", "`code`", "> quoted",
                                  "a\n> quoted", "```block```"])
def test_formatting_characters_do_not_format(text: str) -> None:
    out = blocks.user_text(text, one_line=False)
    assert not re.search(r"[*_~`]", out)
    assert not re.search(r"(?m)^\s*(>|&gt;)", out)


def test_lines_collapse_where_a_line_is_expected_and_stay_in_a_note_block() -> None:
    assert blocks.user_text("a\r\nb\u2028c\n\nd") == "a b c d"
    assert blocks.user_text("a\nb", one_line=False) == "a\nb"


def test_bidi_and_zero_width_characters_are_stripped_from_names_and_notes() -> None:
    job = jobs.Job(id="J1", server_ref=BIDI, requested_by="U0ALICE", channel="C0OPS",
                   state=jobs.SUCCEEDED, created_at=NOW, updated_at=NOW, server_name=BIDI, image_name=BIDI,
                   note=BIDI + "\n*Approved*", finished_at=NOW + timedelta(minutes=1),
                   image_id="i1")
    for payload in (render.parent_message(job, NOW), render.final_reply(job, NOW)):
        blocks_valid(payload)
        text = str(payload)
        assert not re.search("[\u202a-\u202e\u2066-\u2069\u200b-\u200f\ufeff]", text)
        assert "invoicegnp.exex" in text
        assert "*Approved*" not in text


def test_code_spans_keep_names_readable_but_on_one_line() -> None:
    assert blocks.code("web_1*prod") == "`web_1*prod`"  # Slack does not format inside code
    assert blocks.code("a`b\nc") == "`a'b c`"


def test_alert_reasons_are_plain() -> None:
    payload = run_failed_alert("S1", "web-1", "boom\n*fixed* <!channel>", 3, None)
    blocks_valid(payload)
    assert "\n" not in payload["blocks"][0]["text"]["text"]
    assert "<!channel>" not in str(payload) and "*fixed*" not in str(payload)


def test_every_job_field_a_user_controls_is_sanitised_in_the_parent() -> None:
    fields = {f.name for f in dataclasses.fields(jobs.Job)}
    assert {"note", "image_name", "server_ref", "server_name"} <= fields
    job = jobs.Job(id="J2", server_ref="x", requested_by="U0ALICE", channel="C0OPS",
                   state=jobs.FAILED, created_at=NOW, updated_at=NOW, error_code="rejected",
                   error="the cloud said\n> *Approved*", finished_at=NOW)
    text = str(render.parent_message(job, NOW)) + str(render.final_reply(job, NOW))
    assert "*Approved*" not in text
