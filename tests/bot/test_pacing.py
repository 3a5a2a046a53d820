"""Client-side pacing: pure token buckets over passed-in time."""

from __future__ import annotations

from bot.slack.pacing import SlackPacer, TokenBucket


def test_bucket_allows_a_burst_then_spaces_calls_at_the_rate() -> None:
    bucket = TokenBucket(rate=1.0, burst=2.0)
    assert bucket.delay(100.0) == 0.0
    bucket.take(100.0)
    bucket.take(100.0)
    assert bucket.delay(100.0) == 1.0
    assert bucket.delay(100.5) == 0.5
    assert bucket.delay(101.0) == 0.0


def test_posts_are_paced_per_channel_below_slacks_one_per_second() -> None:
    pacer = SlackPacer()
    now = 0.0
    for _ in range(10):
        now += pacer.delay("chat.postMessage", "C1", now)
        pacer.take("chat.postMessage", "C1", now)
    # 10 posts in one channel take at least (10 - burst) / 0.9 s; another channel is free.
    assert now >= (10 - pacer.post_burst) / pacer.post_rate - 1e-9
    assert now > 8.0
    assert pacer.delay("chat.postMessage", "C2", now) == 0.0


def test_scale_speeds_up_every_rate() -> None:
    slow, fast = SlackPacer(), SlackPacer(scale=20)
    for pacer in (slow, fast):
        for _ in range(3):
            pacer.take("chat.update", "", 0.0)
    for _ in range(3):
        slow.take("chat.update", "", 0.0)
        fast.take("chat.update", "", 0.0)
    assert fast.delay("chat.update", "", 0.0) * 20 == slow.delay("chat.update", "", 0.0)


def test_after_waiting_the_delay_a_call_may_go_despite_rounding() -> None:
    # Waiting exactly `delay` must leave a whole token: a float a hair short of one would ask
    # for a 1e-15 s wait that a clock cannot advance by (the notifier would spin).
    bucket = TokenBucket(rate=0.9, burst=2.0)
    now = 100.0
    for _ in range(50):
        now += bucket.delay(now)
        assert bucket.delay(now) == 0.0
        bucket.take(now)
