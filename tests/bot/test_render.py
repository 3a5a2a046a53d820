"""Slack rendering: states, buttons, escaping, limits, final messages."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot import blocks
from bot.cloud.models import Image
from bot.imaging import jobs
from bot.imaging import messages as render
from bot.imaging.jobs import Job
from bot.vocabulary import FailureCode

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=5)
# Anything that would notify people if it reached Slack unescaped.
LIVE_MENTION = re.compile(r"<[!@#]")


def make(state: str = jobs.AWAITING_CONFIRMATION, **kw: Any) -> Job:
    base: dict[str, Any] = dict(id="J17", state=state, server_ref="web1", requested_by="U123",
                                channel="C1", created_at=T0, updated_at=T0)
    base.update(kw)
    return Job(**base)


def all_text(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False)


def mrkdwn_texts(payload: dict[str, Any]) -> list[str]:
    out = [payload["text"]]
    for block in payload.get("blocks", []):
        if "text" in block:
            out.append(block["text"]["text"])
        for element in block.get("elements", []):
            if element.get("type") == "mrkdwn":
                out.append(element["text"])
    return out


def actions(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in payload.get("blocks", []) if b["type"] == "actions"
            for e in b["elements"]]


def check_limits(payload: dict[str, Any]) -> None:
    assert payload["text"]
    assert len(payload["text"]) <= blocks.TEXT_LIMIT
    items = payload.get("blocks", [])
    assert len(items) <= blocks.BLOCK_LIMIT
    for block in items:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= blocks.SECTION_LIMIT
        for element in block.get("elements", []):
            if element.get("type") == "button":
                assert len(element["text"]["text"]) <= blocks.BUTTON_TEXT_LIMIT
            elif element.get("type") == "mrkdwn":
                assert len(element["text"]) <= blocks.SECTION_LIMIT


def finished(state: str, **kw: Any) -> Job:
    base: dict[str, Any] = dict(
        confirmed_at=T0 + timedelta(seconds=20), confirmed_by="U123",
        submitted_at=T0 + timedelta(seconds=21), snapshot_started_at=T0 + timedelta(seconds=22),
        snapshot_ended_at=T0 + timedelta(seconds=34), upload_started_at=T0 + timedelta(seconds=50),
        finished_at=T0 + timedelta(minutes=3), server_id="3f2a", server_name="web1",
        image_name="web1-20250301", image_id="img-9", image_size=3 * 1024 ** 3)
    base.update(kw)
    return make(state, **base)


# --- primitives -------------------------------------------------------------------------------


def test_escape() -> None:
    assert blocks.escape("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"
    assert blocks.escape("plain") == "plain"


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0 s"), (12, "12 s"), (60, "1 min"), (243, "4 min 3 s"), (3600, "1 h"),
    (7500, "2 h 5 min"), (86400, "1 d"), (97200, "1 d 3 h"), (-5, "0 s")])
def test_human_duration(seconds: int, text: str) -> None:
    assert blocks.human_duration(timedelta(seconds=seconds)) == text
    assert blocks.human_duration(seconds) == text


@pytest.mark.parametrize(("size", "text"), [
    (None, "unknown size"), (0, "0 bytes"), (1, "1 byte"), (512, "512 bytes"),
    (1536, "1.5 KiB"), (20 * 1024 ** 3, "20.0 GiB"), (3 * 1024 ** 4, "3.0 TiB"),
    (5000 * 1024 ** 4, "5000.0 TiB")])
def test_human_size(size: int | None, text: str) -> None:
    assert blocks.human_size(size) == text


def test_truncate_keeps_entities_whole() -> None:
    assert blocks.truncate("abc", 3) == "abc"
    assert blocks.truncate("abcdef", 4) == "abc…"
    cut = blocks.truncate("ab&amp;cd", 5)
    assert len(cut) <= 5 and cut.endswith("…") and "&am" not in cut


def test_user_mentions_only_real_ids() -> None:
    assert blocks.user("U0ABC") == "<@U0ABC>"
    assert blocks.user("schedule:<!here>") == "schedule:&lt;!here&gt;"
    assert blocks.user(None) == "someone"


# --- parent message ---------------------------------------------------------------------------


@pytest.mark.parametrize("state", jobs.STATES)
def test_every_state_renders_within_limits(state: str) -> None:
    job = finished(state, error_code="killed") if state in jobs.TERMINAL else make(
        state, snapshot_started_at=T0 if state in jobs.CLOUD_PHASES else None)
    message = render.parent_message(job, NOW)
    check_limits(message)
    assert "J17" in message["text"]
    assert "<@U123>" in all_text(message)
    assert render.FACT_NO_MEMORY in all_text(message)
    assert render.FACT_NOT_BACKUP in all_text(message)
    status = render.job_status_text(job, NOW)
    assert "J17" in status and len(status) <= blocks.SECTION_LIMIT


def test_buttons_only_while_awaiting_confirmation() -> None:
    message = render.parent_message(make(), NOW)
    buttons = actions(message)
    assert [(b["action_id"], b.get("style"), b["value"]) for b in buttons] == [
        ("job_start", "primary", "J17"), ("job_cancel", "danger", "J17")]
    assert [b["text"]["text"] for b in buttons] == ["Start snapshot", "Cancel"]
    text = all_text(message)
    assert "Stop writes" in text and "Flush" in text and "Ready?" in text
    for state in set(jobs.STATES) - {jobs.AWAITING_CONFIRMATION}:
        other = render.parent_message(make(state), NOW)
        assert actions(other) == [], state
        assert "Stop writes" not in all_text(other)


def test_facts_for_data_disks_and_volume_backed() -> None:
    plain = all_text(render.parent_message(make(), NOW))
    assert "Data disks" not in plain and "boots from a volume" not in plain
    job = make(data_disks=("vdb (100 GB)", "<!here> disk"), volume_backed=True)
    message = render.parent_message(job, NOW)
    text = all_text(message)
    assert "Data disks are not included: vdb (100 GB), &lt;!here&gt; disk" in text
    assert render.FACT_VOLUME in text


def test_note_cannot_ping_anyone() -> None:
    job = make(note="<!channel> hi <@U123>", server_ref="<!here>web",
               image_name="<@U999>", server_name="<#C1>")
    for payload in (render.parent_message(job, NOW),
                    render.final_reply(finished(jobs.SUCCEEDED, note=job.note,
                                                server_name="<!here>", image_name="<@U9>"),
                                       NOW)):
        for text in mrkdwn_texts(payload):
            # The only live mention allowed is the requester we put there ourselves.
            assert not LIVE_MENTION.search(text.replace("<@U123>", "")), text
    assert "&lt;!channel&gt; hi &lt;@U123&gt;" in all_text(render.parent_message(job, NOW))
    assert not LIVE_MENTION.search(render.job_status_text(job, NOW).replace("<@U123>", ""))
    assert not LIVE_MENTION.search(render.jobs_table([job], NOW).replace("<@U123>", ""))


def test_huge_note_respects_limits() -> None:
    job = make(note="<" * 10_000, server_ref="s" * 5000, data_disks=tuple("d" * 500
                                                                          for _ in range(20)))
    message = render.parent_message(job, NOW)
    check_limits(message)
    assert "…" in all_text(message)
    check_limits(render.final_reply(finished(jobs.FAILED, error_code="denied",
                                             error="x" * 10_000, server_ref="s" * 5000), NOW))
    assert len(render.job_status_text(job, NOW)) <= blocks.SECTION_LIMIT


def test_phase_times_in_parent() -> None:
    job = make(jobs.UPLOADING, confirmed_at=T0 + timedelta(seconds=20),
               submitted_at=T0 + timedelta(seconds=21),
               snapshot_started_at=T0 + timedelta(seconds=22),
               snapshot_ended_at=T0 + timedelta(seconds=34),
               upload_started_at=T0 + timedelta(seconds=50))
    text = all_text(render.parent_message(job, NOW))
    assert "waiting for confirmation 20 s" in text
    # The window runs from the image request (submitted 21 s) to the observed end (34 s).
    assert "disk copy (quiesce window) 13 s" in text
    assert "packaging 16 s" in text
    assert "upload 4 min 10 s (running)" in text
    assert "total 4 min 39 s (running)" in text


def test_running_snapshot_phase_counts_up_to_now() -> None:
    job = make(jobs.SNAPSHOTTING, snapshot_started_at=NOW - timedelta(seconds=7))
    assert "disk copy (quiesce window) 7 s (running)" in all_text(
        render.parent_message(job, NOW))


# --- replies ----------------------------------------------------------------------------------


def test_phase_replies() -> None:
    job = finished(jobs.UPLOADING, finished_at=None)
    snap = render.phase_reply(job, "phase:snapshotting", NOW)
    assert snap is not None and "keep writes stopped" in snap["text"]
    resume = render.phase_reply(job, "writes_may_resume", NOW)
    assert resume is not None
    assert ("Writes may resume now. The quiesce window lasted 13 s (from the image request at "
            "12:00:21 UTC until the copy was seen done at 12:00:34 UTC)." in resume["text"])
    for event in ("phase:pending_upload", "phase:uploading"):
        reply = render.phase_reply(job, event, NOW)
        assert reply is not None
        check_limits(reply)
    assert render.phase_reply(job, "succeeded", NOW) is None
    assert render.phase_reply(job, "failed:killed", NOW) is None


def test_final_success() -> None:
    reply = render.final_reply(finished(jobs.SUCCEEDED), NOW)
    check_limits(reply)
    text = reply["text"]
    assert "✅" in text or ":white_check_mark:" in text
    assert "web1-20250301" in text and "img-9" in text and "3.0 GiB" in text
    assert "took 2 min 39 s" in text


def test_final_success_volume_backed_zero_bytes() -> None:
    reply = render.final_reply(finished(jobs.SUCCEEDED, image_size=0, volume_backed=True), NOW)
    assert "0 bytes (volume-backed" in reply["text"]


@pytest.mark.parametrize(("code", "words"), [
    ("busy", "busy (task state image_uploading)"),
    ("killed", "upload failed"),
    ("vanished", "vanished"),
    ("stuck", "stuck in task state image_uploading past the deadline"),
    ("denied", "Permission denied"),
    ("unreachable", "unreachable after several retries"),
    ("not_found", "was not found"),
    ("ambiguous", "Several servers are named"),
    ("orphaned", "orphaned"),
    ("rejected", "rejected"),
])
def test_final_failure_per_cause(code: str, words: str) -> None:
    job = finished(jobs.FAILED, error_code=code, task_state="image_uploading",
                   error="detail <!channel> from the cloud")
    reply = render.final_reply(job, NOW)
    check_limits(reply)
    assert reply["text"].startswith("Job J17")
    assert ":x:" in reply["text"]
    assert words in reply["text"]
    # The cause is said once, with the next step; never repeated in a quote. The cloud's own
    # words appear (escaped) only where they are the cause: a refusal or a permission error.
    assert "\n&gt; " not in reply["text"] and "\n>" not in reply["text"]
    assert ("detail &lt;!channel&gt; from the cloud" in reply["text"]) == (
        code in ("denied", "rejected"))
    assert re.search(r"[Tt]ry again|UUID", reply["text"])
    assert words in render.parent_message(job, NOW)["blocks"][2]["text"]["text"]


def test_every_failure_code_has_one_line_with_a_next_step() -> None:
    for code in FailureCode:
        job = finished(jobs.FAILED, error_code=code, task_state="image_uploading",
                       error=None if code == FailureCode.DUPLICATE else
                       "The cloud marked the image `killed`: the upload failed.")
        text = render.failure_text(job)
        assert "\n" not in text, code
        assert text.count("killed") <= 1 or code == FailureCode.KILLED, code
        assert re.search(r"[Tt]ry again|UUID", text), code
        assert render.FAILURE_WORDS[code] and render.FAILURE_WORDS[code] in \
            render.state_words(job)


def test_killed_upload_says_the_cause_once() -> None:
    job = finished(jobs.FAILED, error_code="killed",
                   error="The cloud marked the image `killed`: the upload failed.")
    text = render.final_reply(job, NOW)["text"]
    assert text.count("killed") == 1
    assert ("The upload failed: the cloud marked the image `killed`. Try again; if it repeats, "
            "check the cloud's image service.") in text


def test_failure_during_snapshot_says_writes_may_resume() -> None:
    job = finished(jobs.FAILED, error_code="vanished", snapshot_ended_at=None,
                   upload_started_at=None)
    assert "resume" in render.final_reply(job, NOW)["text"]
    later = finished(jobs.FAILED, error_code="killed")
    assert "resume" not in render.final_reply(later, NOW)["text"]


def test_cancelled_and_already_decided() -> None:
    job = make(jobs.CANCELLED, finished_at=T0)
    assert "Cancelled" in render.final_reply(job, NOW)["text"]
    assert "already cancelled" in render.already_decided(job)
    started = make(jobs.QUEUED, confirmed_by="U777")
    assert "<@U777>" in render.already_decided(started)


# --- ephemeral answers ------------------------------------------------------------------------


def test_jobs_table() -> None:
    rows = [finished(jobs.SUCCEEDED, id="J3"), finished(jobs.FAILED, id="J2", error_code="busy"),
            make(jobs.UPLOADING, id="J1")]
    table = render.jobs_table(rows, NOW)
    lines = table.splitlines()
    assert [line.split()[0] for line in lines] == ["`J3`", "`J2`", "`J1`"]
    assert "`J2` failed: busy ·" in lines[1] and "web1-20250301" in lines[0]
    assert lines[0].startswith("`J3` done →")
    assert "5 min ago" in lines[2]
    assert render.jobs_table([], NOW) == "No jobs."
    many = render.jobs_table([make(id=f"J{i}", server_ref="x" * 200) for i in range(100)], NOW)
    assert len(many) <= blocks.SECTION_LIMIT and "more" in many.splitlines()[-1]


def test_images_table() -> None:
    images = [Image(id="i1", name="old", status="active", size=1024, created_at="2025-01-01"),
              Image(id="i2", name="<!here>", status="saving", created_at="2025-02-01")]
    table = render.images_table("web1", images)
    lines = table.splitlines()
    assert "(2)" in lines[0]
    assert "&lt;!here&gt;" in lines[1] and "old" in lines[2]
    assert "1.0 KiB" in lines[2]
    assert "No images" in render.images_table("web1", [])


def test_help_payload_splits_long_help() -> None:
    text = "\n".join(f"line {i} " + "x" * 100 for i in range(200))
    payload = render.help_payload(text)
    check_limits(payload)
    assert len(payload["blocks"]) > 1
    joined = "\n".join(b["text"]["text"] for b in payload["blocks"])
    assert joined == text


@given(note=st.text(max_size=4000), server=st.text(min_size=1, max_size=300),
       disks=st.lists(st.text(max_size=100), max_size=5),
       state=st.sampled_from(jobs.STATES))
def test_any_user_text_is_inert_and_within_limits(note: str, server: str, disks: list[str],
                                                  state: str) -> None:
    job = make(state, note=note, server_ref=server, server_name=server, image_name=note[:50],
               data_disks=tuple(disks), error=note, error_code="not_found")
    for payload in (render.parent_message(job, NOW), render.final_reply(job, NOW)):
        check_limits(payload)
        for text in mrkdwn_texts(payload):
            assert not LIVE_MENTION.search(text.replace("<@U123>", ""))
    assert not LIVE_MENTION.search(render.job_status_text(job, NOW).replace("<@U123>", ""))
