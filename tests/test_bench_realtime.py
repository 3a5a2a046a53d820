"""`bench.realtime.CopyWatch`: each copy's end is bracketed by the polls around it."""

from __future__ import annotations

from bench.realtime import CopyWatch


def server(name: str, task_state: str | None) -> dict[str, object]:
    return {"name": name, "task_state": task_state}


def test_a_copy_ends_between_the_last_poll_without_it_and_the_first_with_it() -> None:
    watch = CopyWatch()
    watch.saw([server("a", None), server("b", "image_snapshot")], 10.0, 10.2)
    watch.saw([server("a", "image_snapshot"), server("b", "image_pending_upload")], 11.0, 11.3)
    watch.saw([server("a", "image_pending_upload"), server("b", "image_uploading")], 12.0, 12.1)
    watch.saw([server("a", "image_uploading"), server("b", None)], 13.0, 13.1)
    # b: after the poll sent at 10.0 (no copy end yet), before the one answered at 11.3.
    assert (watch.before["b"], watch.after["b"]) == (10.0, 11.3)
    # a: later polls, past the phase, move neither end.
    assert (watch.before["a"], watch.after["a"]) == (11.0, 12.1)


def test_a_copy_never_seen_ending_has_no_upper_end() -> None:
    watch = CopyWatch()
    watch.saw([server("a", "image_snapshot")], 1.0, 1.1)
    watch.saw([server("a", "image_uploading")], 2.0, 2.1)  # the whole phase fell between polls
    assert "a" not in watch.after
