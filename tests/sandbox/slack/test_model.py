"""Pure parts: ts generation, block validation, token buckets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.slack.limits import Limit, RateLimiter, retry_after_header
from sandbox.slack.model import ApiError, SlackWorkspace, validate_blocks


@given(st.lists(st.floats(min_value=-5, max_value=5, allow_nan=False), min_size=1,
                max_size=50))
def test_ts_unique_and_increasing_whatever_the_clock(moves: list[float]) -> None:
    now = [1_764_370_000.0]
    ws = SlackWorkspace(clock=lambda: now[0], seed=False)
    stamps = []
    for move in moves:
        now[0] += move
        stamps.append(ws.next_ts())
    keys = [tuple(int(p) for p in s.split(".")) for s in stamps]
    assert keys == sorted(keys) and len(set(stamps)) == len(stamps)
    assert all(len(s.split(".")[1]) == 6 for s in stamps)


def test_seed() -> None:
    ws = SlackWorkspace(clock=lambda: 0.0)
    assert {u.name for u in ws.users.values()} >= {"alice", "bob", "carol", "imagebot"}
    assert ws.channel("#ops").id == "C0OPS" and ws.channel("ops-alerts").id == "C0ALERTS"
    secret = ws.channel("G0SECRET")
    assert secret.is_private and "U0BOT" not in secret.members
    assert ws.user("@carol").id == "U0CAROL"
    # A user id opens the bot's DM with that user.
    dm = ws.channel("U0BOB")
    assert dm.is_im and dm.members == {"U0BOB", "U0BOT"}
    assert ws.post_message("U0BOB", text="hi").channel == dm.id
    with pytest.raises(ApiError, match="channel_not_found"):
        ws.channel("#nope")


def test_load_channels_have_the_bot_and_take_its_posts() -> None:
    ws = SlackWorkspace(clock=lambda: 0.0)
    added = ws.add_load_channels(3)
    assert [c.id for c in added] == ["C0LOAD0", "C0LOAD1", "C0LOAD2"]
    assert ws.channel("#load-2").id == "C0LOAD2" and "U0BOT" in ws.channel("#load-0").members
    assert ws.post_message("C0LOAD1", text="hi").channel == "C0LOAD1"
    with pytest.raises(ApiError, match="channel_not_found"):
        ws.channel("#load-3")


@pytest.mark.parametrize("blocks", [
    [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
    [{"type": "actions", "elements": []}],
    [{"type": "actions", "elements": [
        {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "b" * 76}}]}],
    [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
    [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}],
    [{"text": "no type"}],
    "not a list",
])
def test_invalid_blocks(blocks: object) -> None:
    with pytest.raises(ApiError) as err:
        validate_blocks(blocks)
    assert err.value.code == "invalid_blocks"


@given(st.lists(st.floats(min_value=0, max_value=3, allow_nan=False), min_size=1,
                max_size=80),
       st.sampled_from([0.5, 1.0, 4.0]))
def test_bucket_never_exceeds_rate_plus_burst(gaps: list[float], scale: float) -> None:
    limiter = RateLimiter(scale=scale, limits={"m": Limit(rate=1.0, burst=3)})
    now, allowed = 0.0, 0
    for gap in gaps:
        now += gap
        wait = limiter.take("m", None, now)
        if wait is None:
            allowed += 1
        else:
            assert wait > 0
            # Waiting as told is always enough.
            assert limiter.take("m", None, now + wait + 1e-9) is None
            now += wait + 1e-9
            allowed += 1
    assert allowed <= 3 + now * scale + 1e-6


def test_retry_after_is_whole_seconds() -> None:
    assert [retry_after_header(w) for w in (0.01, 1.0, 1.2, 11.9)] == ["1", "1", "2", "12"]


def test_the_workspace_post_cap_counts_across_channels_and_refuses_without_spending() -> None:
    limiter = RateLimiter(workspace_posts=Limit(rate=1.0, burst=2))
    # Two channels, each well inside its own 1/s burst 3: the workspace's 2 tokens go first.
    assert limiter.take("chat.postMessage", "C1", 0.0) is None
    assert limiter.take("chat.postMessage", "C2", 0.0) is None
    wait = limiter.take("chat.postMessage", "C3", 0.0)
    assert wait is not None and abs(wait - 1.0) < 1e-9
    # The refused call spent nothing: C3 still has its whole burst once the workspace refills.
    assert limiter.take("chat.postMessage", "C3", 1.0) is None
    assert limiter.take("chat.update", None, 1.0) is None  # other methods: their own limits
    # Off (the default, its size is not published): only the per-channel buckets count.
    free = RateLimiter()
    assert all(free.take("chat.postMessage", f"C{i}", 0.0) is None for i in range(20))
