"""The restore-test state machine (`bot.imaging.verify`): pure decisions, no cloud."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from bot.cloud.models import Flavor, Image, Server
from bot.imaging import verify
from bot.imaging.verify import Verification, VerifyLimits

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LIMITS = VerifyLimits()
GIB = 1024 ** 3
FLAVORS = [Flavor("4", "xl", 16384, 160, 8), Flavor("1", "small", 2048, 20, 1),
           Flavor("2", "medium", 4096, 40, 2), Flavor("0", "zero-disk", 512, 0, 1)]


def image(**kw: object) -> Image:
    base: dict[str, object] = {"id": "img-1", "name": "web-1-x", "status": "active",
                               "size": 2 * GIB}
    return Image(**(base | kw))  # type: ignore[arg-type]


def item(**kw: object) -> Verification:
    base: dict[str, object] = {"id": "V1", "state": verify.QUEUED, "image_ref": "web-1-x",
                               "requested_by": "U1", "channel": "C1", "created_at": NOW,
                               "updated_at": NOW}
    return Verification(**(base | kw))  # type: ignore[arg-type]


def server(status: str = "BUILD", task: str | None = "spawning", **kw: object) -> Server:
    return Server(id="s-1", name="imagebot-verify-V1", status=status, vm_state=None,
                  task_state=task, **kw)  # type: ignore[arg-type]


# --- the flavor --------------------------------------------------------------------------


def test_the_smallest_flavor_that_fits_min_disk_min_ram_and_size() -> None:
    assert verify.pick_flavor(FLAVORS, image()).name == "small"
    assert verify.pick_flavor(FLAVORS, image(min_disk=30)).name == "medium"
    assert verify.pick_flavor(FLAVORS, image(min_ram=3000)).name == "medium"
    assert verify.pick_flavor(FLAVORS, image(size=41 * GIB)).name == "xl"
    assert verify.pick_flavor(FLAVORS, image(size=500 * GIB)) is None


def test_a_zero_disk_flavor_only_for_a_volume_backed_image() -> None:
    # Nova's policy refuses 0 GB disk flavors to non-admins (zero_disk_flavor, Ussuri+).
    backed = image(size=0, properties={"block_device_mapping": "[]"})
    assert verify.pick_flavor(FLAVORS, backed).name == "zero-disk"
    assert verify.pick_flavor(FLAVORS, image(size=0)).name == "small"


@given(st.integers(0, 200), st.integers(0, 20000), st.integers(0, 200 * GIB))
def test_the_chosen_flavor_always_fits_and_none_smaller_does(disk: int, ram: int,
                                                             size: int) -> None:
    im = image(min_disk=disk, min_ram=ram, size=size)
    chosen = verify.pick_flavor(FLAVORS, im)
    fitting = [f for f in FLAVORS if f.disk > 0 and f.ram >= ram and f.disk >= disk
               and f.disk * GIB >= size]
    if chosen is None:
        assert not fitting
    else:
        assert chosen in fitting
        assert all((chosen.ram, chosen.disk) <= (f.ram, f.disk) for f in fitting)


# --- planning the boot --------------------------------------------------------------------


def test_the_boot_is_planned_and_recorded_before_it_is_sent() -> None:
    plan, step = verify.plan_boot(item(job_id="J7"), image(), FLAVORS, networks=["net-1"],
                                  now=NOW, limits=LIMITS)
    assert plan is not None and plan.name == "imagebot-verify-J7"
    assert plan.metadata == {verify.SERVER_METADATA_KEY: "V1",
                             verify.IMAGE_METADATA_KEY: "img-1"}
    assert plan.networks == ("net-1",)
    assert step.target == verify.BOOTING and step.events == ("booting",)
    assert step.fields["boot_attempts"] == 1 and step.fields["flavor"] == "small"
    assert step.fields["deadline_at"] == NOW + LIMITS.boot


def test_without_a_job_the_server_is_named_after_the_verification() -> None:
    plan, _ = verify.plan_boot(item(), image(), FLAVORS, networks=None, now=NOW,
                               limits=LIMITS)
    assert plan is not None and plan.name == "imagebot-verify-V1" and plan.networks == ()


def test_an_image_that_is_not_active_or_fits_no_flavor_fails_without_a_server() -> None:
    for bad in (image(status="saving"), image(size=999 * GIB)):
        plan, step = verify.plan_boot(item(), bad, FLAVORS, networks=None, now=NOW,
                                      limits=LIMITS)
        assert plan is None and step.target == verify.FAILED
        assert step.events == ("result",) and step.fields["outcome"] == "failed"


# --- booting -------------------------------------------------------------------------------


def booting(**kw: object) -> Verification:
    return item(**({"state": verify.BOOTING, "server_id": "s-1", "boot_started_at": NOW,
                    "deadline_at": NOW + LIMITS.boot} | kw))


def test_active_without_a_marker_passes_and_goes_to_delete() -> None:
    later = NOW + timedelta(seconds=33)
    step = verify.advance(booting(), server=server("ACTIVE", None), console=None, now=later,
                          limits=LIMITS)
    assert step.target == verify.DELETING and step.fields["outcome"] == "passed"
    done = dataclasses.replace(booting(), **step.fields)
    assert done.boot_seconds == 33


def test_active_with_a_marker_waits_for_the_console() -> None:
    step = verify.advance(booting(console_marker="login:"), server=server("ACTIVE", None),
                          console=None, now=NOW, limits=LIMITS)
    assert step.target == verify.CONSOLE and step.fields["deadline_at"] == NOW + LIMITS.console


def test_still_building_waits_then_fails_at_the_deadline_naming_the_task_state() -> None:
    assert verify.advance(booting(), server=server(), console=None, now=NOW,
                          limits=LIMITS).target is None
    step = verify.advance(booting(), server=server(), console=None,
                          now=NOW + LIMITS.boot + timedelta(seconds=1), limits=LIMITS)
    assert step.target == verify.DELETING and step.fields["outcome"] == "failed"
    assert "BUILD" in step.fields["error"] and "spawning" in step.fields["error"]
    assert "15 min" in step.fields["error"]


def test_an_error_server_fails_with_nova_fault_and_is_deleted() -> None:
    step = verify.advance(booting(), server=server("ERROR", None, fault="No valid host"),
                          console=None, now=NOW, limits=LIMITS)
    assert step.target == verify.DELETING and "No valid host" in step.fields["error"]


def test_a_server_that_vanished_fails_at_once() -> None:
    step = verify.advance(booting(), server=None, console=None, now=NOW, limits=LIMITS)
    assert step.target == verify.FAILED and step.fields["deleted_at"] == NOW


# --- the console -----------------------------------------------------------------------------


def on_console(**kw: object) -> Verification:
    return booting(**({"state": verify.CONSOLE, "console_marker": "login:",
                       "active_at": NOW, "deadline_at": NOW + LIMITS.console} | kw))


def test_the_marker_in_the_console_passes() -> None:
    step = verify.advance(on_console(), server=server("ACTIVE", None),
                          console="Ubuntu 24.04 web login: ", now=NOW, limits=LIMITS)
    assert step.target == verify.DELETING and step.fields["console_seen"] is True


def test_no_console_log_on_the_cloud_passes_saying_so() -> None:
    # Rackspace answers os-getConsoleOutput with 501: the client says None.
    step = verify.advance(on_console(), server=server("ACTIVE", None), console=None, now=NOW,
                          limits=LIMITS)
    assert step.target == verify.DELETING and step.fields["outcome"] == "passed"
    assert step.fields["console_seen"] is None


def test_a_marker_that_never_shows_fails_at_the_console_deadline() -> None:
    assert verify.advance(on_console(), server=server("ACTIVE", None), console="booting",
                          now=NOW, limits=LIMITS).target is None
    step = verify.advance(on_console(), server=server("ACTIVE", None), console="booting",
                          now=NOW + LIMITS.console + timedelta(seconds=1), limits=LIMITS)
    assert step.target == verify.DELETING and step.fields["console_seen"] is False
    assert step.fields["outcome"] == "failed"


# --- deleting -----------------------------------------------------------------------------------


def deleting(outcome: str = "passed", **kw: object) -> Verification:
    return booting(**({"state": verify.DELETING, "outcome": outcome,
                       "deadline_at": NOW + LIMITS.delete} | kw))


def test_gone_ends_with_the_verdict_decided_before_the_delete() -> None:
    for outcome, state in (("passed", verify.PASSED), ("failed", verify.FAILED)):
        step = verify.advance(deleting(outcome), server=None, console=None, now=NOW,
                              limits=LIMITS)
        assert step.target == state and step.fields["deleted_at"] == NOW
        assert step.events == ("result",)


def test_a_server_that_will_not_go_ends_the_test_and_says_so() -> None:
    there = server("ACTIVE", "deleting")
    assert verify.advance(deleting(), server=there, console=None, now=NOW,
                          limits=LIMITS).target is None
    step = verify.advance(deleting(), server=there, console=None,
                          now=NOW + LIMITS.delete + timedelta(seconds=1), limits=LIMITS)
    assert step.target == verify.PASSED and "could not be deleted" in step.fields["error"]
    assert "deleted_at" not in step.fields


def test_delete_is_sent_again_only_after_the_retry_interval() -> None:
    assert verify.should_delete(deleting(), NOW, LIMITS)
    asked = deleting(delete_requested_at=NOW)
    assert not verify.should_delete(asked, NOW + timedelta(seconds=5), LIMITS)
    assert verify.should_delete(asked, NOW + LIMITS.delete_retry, LIMITS)


def test_leftovers_are_our_servers_no_open_test_owns() -> None:
    ours = server("ACTIVE", None, metadata={verify.SERVER_METADATA_KEY: "V1"})
    owned = dataclasses.replace(ours, id="s-2", metadata={verify.SERVER_METADATA_KEY: "V2"})
    going = dataclasses.replace(ours, id="s-3", task_state="deleting")
    someone_elses = dataclasses.replace(ours, id="s-4", metadata={"role": "web"})
    assert verify.leftovers([ours, owned, going, someone_elses], {"V2"}) == [ours]


def test_only_booting_console_and_deleting_are_advanced() -> None:
    for state in (verify.QUEUED, verify.PASSED, verify.FAILED):
        assert verify.advance(item(state=state), server=None, console=None, now=NOW,
                              limits=LIMITS).target is None


def test_a_refusal_fails_the_test_or_ends_the_delete_at_its_deadline() -> None:
    step = verify.rejected(booting(), "HTTP 403", NOW, LIMITS)
    assert step.target == verify.DELETING and "HTTP 403" in step.fields["error"]
    assert verify.rejected(item(), "HTTP 400", NOW, LIMITS).target == verify.FAILED
    assert verify.rejected(deleting(), "HTTP 403", NOW, LIMITS).target is None
    late = verify.rejected(deleting(), "HTTP 403", NOW + LIMITS.delete * 2, LIMITS)
    assert late.target == verify.PASSED and "could not be deleted" in late.fields["error"]
