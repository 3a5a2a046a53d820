"""Client-side pacing: pure token buckets over passed-in time."""

from __future__ import annotations

from bot.slack.pacing import SlackPacer, TokenBucket, Turns, take_turn


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


# The workspace-wide post limit, learnt from 429s (bot/slack/pacing.py docstring).

def post(pacer: SlackPacer, channel: str, now: float) -> float:
    """Post as soon as the pacer allows, from `now`; the time the post went."""
    now += pacer.delay("chat.postMessage", channel, now)
    pacer.take("chat.postMessage", channel, now)
    return now


def posting() -> SlackPacer:
    """A pacer that has been posting for a while (its first second, when a refusal teaches
    nothing, is long past)."""
    pacer = SlackPacer()
    post(pacer, "C-earlier", 0.0)
    return pacer


def test_a_post_refused_while_posting_to_several_channels_learns_a_workspace_limit() -> None:
    pacer = posting()
    for i in range(6):  # six channels at once: each channel's own bucket lets its post go
        post(pacer, f"C{i}", 10.0)
    assert pacer.workspace_posts is None
    pacer.refused("chat.postMessage", "C5", 10.0, 10.2)
    # 6 posts in the second before the refused one went: a tenth under 6/s.
    assert pacer.workspace_posts is not None
    assert abs(pacer.workspace_posts.rate - 0.9 * 6) < 1e-9
    # Posts in every channel now share it: fresh channels wait for its tokens in turn.
    times = [10.2]
    for i in range(12):
        times.append(post(pacer, f"D{i}", times[-1]))
    assert times[1] > 10.2  # the refusal spent the bucket
    # Then one post every 1 / 5.4 s across all channels, though each channel's own is fresh.
    assert abs((times[-1] - times[3]) - 9 / (0.9 * 6)) < 1e-6


def test_a_refusal_while_posting_to_one_channel_is_that_channels_own_limit() -> None:
    pacer = posting()
    for _ in range(3):
        post(pacer, "C1", 10.0)
    pacer.refused("chat.postMessage", "C1", 11.0, 11.1)
    assert pacer.workspace_posts is None
    pacer.refused("chat.update", "", 11.0, 11.1)  # other methods learn nothing either
    assert pacer.workspace_posts is None


def test_a_refused_burst_post_calms_its_channel_and_teaches_the_workspace_nothing() -> None:
    # Slack allows "short bursts" over one post per second per channel and no more, and a
    # 429 does not say which limit refused: the second of two posts to C0 within a second
    # may be C0's own, however many other channels are posting.
    pacer = posting()
    for i in range(6):
        post(pacer, f"C{i}", 10.0)
    second = post(pacer, "C0", 10.5)
    assert second == 10.5  # the channel's burst let it go
    pacer.refused("chat.postMessage", "C0", second, second + 0.1)
    assert pacer.workspace_posts is None
    assert pacer.calmed_channels(second + 0.1) == 1 and pacer.workspace_post_limit(11.0) == 0
    # C0 now posts one at a time, a whole interval apart; the other channels keep bursts.
    interval = 1 / pacer.post_rate
    third = post(pacer, "C0", 10.6)
    assert abs(third - (10.5 + interval)) < 1e-9
    assert pacer.delay("chat.postMessage", "C0", third + interval / 2) > 0  # no burst left
    assert [post(pacer, "C1", 12.0), post(pacer, "C1", 12.0)] == [12.0, 12.0]
    # A refusal of a post more than a second after its channel's last is the workspace's.
    for i in range(1, 6):
        post(pacer, f"C{i}", third - 0.1)
    pacer.refused("chat.postMessage", "C0", third, third + 0.1)
    assert pacer.workspace_posts is not None
    assert abs(pacer.workspace_post_limit(third + 0.1) - pacer.workspace_posts.rate) < 1e-9
    # Ten quiet minutes after its refused burst, C0 may burst again.
    later = 10.6 + 600.0
    assert pacer.calmed_channels(later) == 0
    assert [post(pacer, "C0", later), post(pacer, "C0", later)] == [later, later]


def test_bursts_of_two_channels_refused_within_a_second_are_the_workspaces() -> None:
    pacer = posting()
    for i in range(4):
        post(pacer, f"C{i}", 10.0)
    for i in range(4):
        post(pacer, f"C{i}", 10.3)  # each channel's second post: a burst
    pacer.refused("chat.postMessage", "C1", 10.3, 10.4)
    assert pacer.workspace_posts is None  # C1's own limit, as far as one refusal can tell
    pacer.refused("chat.postMessage", "C2", 10.3, 10.4)
    assert pacer.workspace_posts is not None  # two channels at once: the workspace's


def test_refusals_in_the_first_second_of_posting_teach_nothing() -> None:
    # After a restart the pacer does not know what the process before it posted: a refusal
    # in its first second may be any channel's own limit.
    pacer = SlackPacer()
    for i in range(10):
        post(pacer, f"C{i}", 10.0)
    pacer.refused("chat.postMessage", "C3", 10.0, 10.1)
    pacer.refused("chat.postMessage", "C9", 10.9, 11.0)
    assert pacer.workspace_posts is None
    for i in range(10, 20):
        post(pacer, f"C{i}", 11.0)
    pacer.refused("chat.postMessage", "C15", 11.0, 11.1)
    assert pacer.workspace_posts is not None


def test_later_refusals_cut_the_learnt_limit_but_not_below_one_channels_pace() -> None:
    pacer = posting()
    for i in range(10):
        post(pacer, f"C{i}", 10.0)
    pacer.refused("chat.postMessage", "C0", 10.0, 10.0)
    assert pacer.workspace_posts is not None
    first = pacer.workspace_posts.rate
    # A post that went before that lesson says nothing new about the limit.
    pacer.refused("chat.postMessage", "C1", 9.99, 10.1)
    assert pacer.workspace_posts.rate == first
    rates = [first]
    now = 10.1
    for k in range(12):  # fresh channels: the refused post cannot be its channel's own limit
        sent = post(pacer, f"D{k}", now)
        now = post(pacer, f"E{k}", sent)
        pacer.refused("chat.postMessage", f"E{k}", now, now)
        assert pacer.workspace_posts is not None
        rates.append(pacer.workspace_posts.rate)
    assert abs(rates[1] - 0.7 * rates[0]) < 1e-9
    assert rates[-1] == pacer.post_rate  # the floor: never below one channel's own pace


def test_quiet_minutes_raise_the_learnt_limit_and_ten_forget_it() -> None:
    pacer = posting()
    for i in range(4):
        post(pacer, f"C{i}", 100.0)
    pacer.refused("chat.postMessage", "C0", 100.0, 100.0)
    learnt = 0.9 * 4
    assert pacer.interval("chat.postMessage", "C9") == 1.0 / min(pacer.post_rate, learnt)
    pacer.delay("chat.postMessage", "C9", 100.0 + 59.0)
    assert pacer.workspace_posts is not None and pacer.workspace_posts.rate == learnt
    pacer.delay("chat.postMessage", "C9", 100.0 + 120.0)
    assert abs(pacer.workspace_posts.rate - learnt * 1.25 ** 2) < 1e-9
    assert pacer.delay("chat.postMessage", "C9", 100.0 + 600.0) == 0.0
    assert pacer.workspace_posts is None


def test_the_learning_runs_on_the_scaled_clock_too() -> None:
    # x20: a second of Slack's time is 0.05 s here, a quiet minute 3 s.
    pacer = SlackPacer(scale=20)
    post(pacer, "C-earlier", 0.0)
    for i in range(4):
        post(pacer, f"C{i}", 100.0)
    post(pacer, "C0", 99.0)  # older than the scaled second before the refused post
    pacer.refused("chat.postMessage", "C0", 100.0, 100.0)
    assert pacer.workspace_posts is not None
    assert abs(pacer.workspace_posts.rate - 0.9 * 4 * 20) < 1e-9
    assert abs(pacer.workspace_post_limit(100.0) - 0.9 * 4) < 1e-9  # in Slack's posts/s
    pacer.delay("chat.postMessage", "C0", 100.0 + 3.0)
    assert abs(pacer.workspace_posts.rate - 0.9 * 4 * 20 * 1.25) < 1e-9


async def test_take_turn_waits_again_when_another_lane_took_the_token() -> None:
    pacer = posting()
    now = [50.0]
    for i in range(3):
        post(pacer, f"C{i}", 50.0)
    pacer.refused("chat.postMessage", "C2", 50.0, 50.0)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds
        if len(slept) <= 4:  # meanwhile another channel's call takes the token it waited for
            pacer.take("chat.postMessage", "C9", now[0])

    went = await take_turn(pacer, "chat.postMessage", "C7", lambda: now[0], sleep)
    assert len(slept) == 5  # more than the three waits the notifier used to allow
    assert went == now[0]


async def test_take_turn_on_a_clock_that_does_not_move_ends_after_one_sleep() -> None:
    pacer = posting()
    for _ in range(2):
        pacer.take("chat.postMessage", "C1", 5.0)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    assert await take_turn(pacer, "chat.postMessage", "C1", lambda: 5.0, sleep) == 5.0
    assert len(slept) == 1


async def test_under_a_shared_bucket_a_call_lets_a_more_urgent_one_that_may_go_first() -> None:
    pacer = posting()
    for i in range(2):
        post(pacer, f"C{i}", 50.0)
    pacer.refused("chat.postMessage", "C1", 50.0, 50.0)
    turns = Turns()
    now = [60.0]  # long enough after: the shared bucket has its burst back
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds
        if len(slept) == 2:  # the urgent call got its token meanwhile and went
            del turns.waiting[urgent]

    urgent = 99
    turns.waiting[urgent] = ("chat.postMessage", "C8", 0)  # rank 0: most urgent, may go now
    went = await turns.take(pacer, "chat.postMessage", "C7", 2, lambda: now[0], sleep)
    interval = pacer.interval("chat.postMessage", "C7")
    assert slept == [interval / 4, interval / 4]  # it waited while the urgent call could go
    assert went == now[0] and not turns.waiting
    # Without a shared bucket nobody waits for anybody.
    plain = SlackPacer()
    turns.waiting[urgent] = ("chat.postMessage", "C8", 0)
    slept.clear()
    await turns.take(plain, "chat.postMessage", "C7", 2, lambda: now[0], sleep)
    assert slept == []


def test_a_recalled_lesson_paces_as_the_learnt_one_and_ages_from_its_refusal() -> None:
    learnt = posting()
    for i in range(5):
        post(learnt, f"C{i}", 100.0)
    learnt.refused("chat.postMessage", "C4", 100.0, 100.0)
    lesson = learnt.lesson(130.0)
    assert lesson is not None and lesson == (0.9 * 5, 100.0)
    # A new process, its clock starting again at 7.0, thirty seconds after that refusal.
    after = SlackPacer()
    after.recall(lesson[0], 7.0 - 30.0, 7.0)
    assert after.workspace_posts is not None and after.lessons == 1
    assert after.delay("chat.postMessage", "C9", 7.0) > 0  # starts spent, as after a 429
    assert after.interval("chat.postMessage", "C9") == learnt.interval("chat.postMessage", "C9")
    # Its quiet minutes count from the refusal: 30 s more is one raise.
    after.delay("chat.postMessage", "C9", 37.0)
    assert abs(after.workspace_posts.rate - 0.9 * 5 * 1.25) < 1e-9
    # A lesson ten quiet minutes old is none; so is a forgotten one.
    stale = SlackPacer()
    stale.recall(4.5, 7.0 - 600.0, 7.0)
    assert stale.workspace_posts is None and stale.lessons == 0
    assert learnt.lesson(100.0 + 600.0) is None


def test_a_recalled_lesson_at_another_scale_keeps_slacks_rate() -> None:
    fast = SlackPacer(scale=20)
    fast.recall(4.5, 0.0, 1.0)
    assert fast.workspace_posts is not None
    assert abs(fast.workspace_posts.rate - 4.5 * 20) < 1e-9
    assert fast.lesson(1.0) == (4.5, 0.0)
