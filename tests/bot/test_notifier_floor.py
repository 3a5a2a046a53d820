"""The benchmarks' per-channel floor (`bench.floors`): an ideal notifier at Slack's rate."""

from __future__ import annotations

from bench.floors import Post, ideal_times


def test_posts_beyond_the_burst_go_at_the_rate_in_thread_order() -> None:
    posts = [Post("J1", 0.0, False, "card"), Post("J1", 0.0, False, "copy"),
             Post("J1", 0.0, True, "writes"), Post("J1", 0.0, True, "final")]
    times = ideal_times(posts, rate=1.0, burst=3.0)
    assert [times[("J1", p.label)] for p in posts] == [0.0, 0.0, 0.0, 1.0]


def test_a_thread_with_an_urgent_post_ready_goes_before_older_routine_posts() -> None:
    routine = [Post(f"J{i}", 0.0, False, "card") for i in range(1, 6)]
    urgent = [Post("J9", 0.5, False, "card"), Post("J9", 0.5, True, "writes")]
    times = ideal_times(routine + urgent, rate=1.0, burst=1.0)
    # At t=0 one card goes; from t=1 the thread holding "writes may resume" goes first.
    assert times[("J1", "card")] == 0.0
    assert times[("J9", "card")] == 1.0 and times[("J9", "writes")] == 2.0
    assert times[("J5", "card")] == 6.0


def test_an_idle_channel_refills_its_burst() -> None:
    posts = [Post("J1", 0.0, False, "card"), Post("J2", 10.0, True, "a"),
             Post("J3", 10.0, True, "b")]
    times = ideal_times(posts, rate=0.5, burst=2.0)
    assert times[("J2", "a")] == 10.0 and times[("J3", "b")] == 10.0


def test_epoch_times_end() -> None:
    # Ready times are epoch seconds in the benchmarks: a refill step must not round away.
    start = 1_764_662_400.123
    posts = [Post(f"J{i}", start, i % 2 == 0, "card") for i in range(50)]
    times = ideal_times(posts, rate=20.0, burst=3.0)
    assert len(times) == 50
    assert abs(max(times.values()) - start - (50 - 3) / 20.0) < 1e-6
