"""Rackspace Scheduled Images (`rax-si-image-schedule`) on `--api rackspace-legacy`: the API
(docs-cloud-servers api-reference ...rax-si-scheduled-image.rst, samples in tests/samples) and
the service itself (rackerlabs/qonos worker/snapshot/snapshot.py): one image a day or week,
named and tagged as qonos does, culled to the retention after each success."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import httpx
import pytest

from sandbox.cloud.lifecycle import DAY_SECONDS, next_slot, scheduled_image_name, slot_offset
from sandbox.cloud.model import DAYS, Image, ManualClock, World, stable_id

from .conftest import START, rackspace_client, sample

WEB1 = stable_id("server", "web-1")
SAMPLES = "rackspace/cloud-servers/scheduled-images"
TAG = "org.openstack__1__created_by"
WEEK = 7 * DAY_SECONDS


@pytest.fixture
def rclock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def rax(rclock: ManualClock) -> World:
    # Tokens outlive the weeks these tests skip through (the sim's default is an hour).
    return World(clock=rclock, api="rackspace-legacy", token_ttl=60 * DAY_SECONDS)


@pytest.fixture
async def rc(rax: World) -> AsyncIterator[httpx.AsyncClient]:
    async with rackspace_client(rax) as c:
        yield c


def scheduled(world: World, server_id: str) -> list[Image]:
    """The server's scheduled images, oldest first (after the due transitions)."""
    world.advance()
    found = [im for im in world.images.values()
             if im.properties.get("instance_uuid") == server_id and TAG in im.properties]
    return sorted(found, key=lambda im: im.created_at)


async def test_enable_show_disable_match_the_documented_samples(rc: httpx.AsyncClient) -> None:
    url = f"/compute/v2.1/servers/{WEB1}/rax-si-image-schedule"
    r = await rc.get(url)
    assert r.status_code == 404
    documented = sample(f"{SAMPLES}/show-scheduled-images-not-found-resp.json")
    assert set(r.json()["itemNotFound"]) == set(documented["itemNotFound"])
    assert r.json()["itemNotFound"]["message"] == \
        f"Image schedule does not exist for server {WEB1}"
    for name in ("daily", "weekly"):
        req = sample(f"{SAMPLES}/enable-scheduled-images-{name}-req.json")
        r = await rc.post(url, json=req)
        assert r.status_code == 200
        assert r.json() == sample(f"{SAMPLES}/enable-scheduled-images-{name}-resp.json")
        assert (await rc.get(url)).json() == r.json()
    # Retention is 1..65535, days SUNDAY..SATURDAY (ext-scheduled-images.rst).
    for bad in ({"retention": 0}, {"retention": 65536}, {"retention": 3, "day_of_week": "FUNDAY"},
                {}, {"retention": 3, "hour": 4},
                # As strict as the docs: an Int, and the days as the enumeration spells them.
                {"retention": "7"}, {"retention": 7.0}, {"retention": True},
                {"retention": 3, "day_of_week": "saturday"},
                {"retention": 3, "day_of_week": "Sat"}, {"retention": 3, "day_of_week": None}):
        r = await rc.post(url, json={"image_schedule": bad})
        assert r.status_code == 400, bad
    assert (await rc.post(url, json={"image_schedule": {"retention": 65535}})).status_code == 200
    assert (await rc.delete(url)).status_code == 202
    assert (await rc.get(url)).status_code == 404
    assert (await rc.delete(url)).status_code == 404


async def test_extension_is_listed_on_rackspace(rc: httpx.AsyncClient) -> None:
    # docs-cloud-servers get-retrieve-list-of-extensions-extensions.rst.
    exts = (await rc.get("/compute/v2.1/extensions")).json()["extensions"]
    si = next(e for e in exts if e["alias"] == "rax-si-image-schedule")
    assert si["name"] == "ScheduledImages"
    one = await rc.get("/compute/v2.1/extensions/rax-si-image-schedule")
    assert one.json()["extension"] == si


def test_slots_are_daily_at_a_fixed_time_or_weekly_on_the_day() -> None:
    offset = slot_offset(WEB1)
    assert 0 <= offset < DAY_SECONDS and slot_offset(WEB1) == offset
    first = next_slot(START, offset, None)
    assert START < first <= START + DAY_SECONDS and (first - offset) % DAY_SECONDS == 0
    assert next_slot(first, offset, None) == first + DAY_SECONDS
    saturday = DAYS.index("SATURDAY")
    weekly = next_slot(START, offset, saturday)
    assert START < weekly <= START + WEEK
    assert dt.datetime.fromtimestamp(weekly, dt.UTC).strftime("%A") == "Saturday"
    assert next_slot(weekly, offset, saturday) == weekly + WEEK
    assert next_slot(START, offset, None, speed=24.0) <= START + DAY_SECONDS / 24


def test_names_follow_qonos_and_fit_255_characters() -> None:
    assert scheduled_image_name(False, "web-1", 1_700_000_000.5) == "Daily-web-1-1700000000"
    long = scheduled_image_name(True, "x" * 300, 1_700_000_000)
    assert len(long) == 255 and long.startswith("Weekly-x") and long.endswith("-1700000000")


async def test_daily_images_are_taken_tagged_and_culled_to_the_retention(
        rc: httpx.AsyncClient, rax: World, rclock: ManualClock) -> None:
    manual = rax.create_image(WEB1, "manual")  # not the service's: never culled
    rclock.advance(300)
    url = f"/compute/v2.1/servers/{WEB1}/rax-si-image-schedule"
    assert (await rc.post(url, json={"image_schedule": {"retention": 2}})).status_code == 200
    first = rax.dump()["servers"]
    slot = next(s for s in first if s["id"] == WEB1)["schedule"]["next_run"]
    assert slot  # the service picks the time; /_sim/state shows it
    rclock.advance(DAY_SECONDS)
    taken = scheduled(rax, WEB1)
    assert len(taken) == 1
    image = taken[0]
    assert image.status == "active" and image.name.startswith("Daily-web-1-")
    # qonos _create_image: this tag; Nova's own createImage properties come with it.
    assert image.properties[TAG] == "scheduled_images_service"
    assert image.properties["image_type"] == "snapshot"
    rclock.advance(3 * DAY_SECONDS)
    taken = scheduled(rax, WEB1)
    assert len(taken) == 2  # retention 2: the oldest ones were culled after each success
    assert [round((b.created_at - a.created_at) / DAY_SECONDS) for a, b in
            zip(taken, taken[1:], strict=False)] == [1]
    assert manual.id in rax.images
    # Removing the tag pins an image (scheduled-images FAQ); protected ones stay too.
    pinned, protected = taken
    del rax.images[pinned.id].properties[TAG]
    rax.images[protected.id].protected = True
    rclock.advance(2 * DAY_SECONDS)
    assert pinned.id in rax.images and protected.id in rax.images
    assert len(scheduled(rax, WEB1)) == 3  # protected + the 2 newest; pinned is untagged
    # Disabling stops the service; the images stay.
    assert (await rc.delete(url)).status_code == 202
    before = set(rax.images)
    rclock.advance(3 * DAY_SECONDS)
    assert set(rax.images) == before


async def test_weekly_images_are_taken_once_a_week(rc: httpx.AsyncClient, rax: World,
                                                   rclock: ManualClock) -> None:
    url = f"/compute/v2.1/servers/{WEB1}/rax-si-image-schedule"
    await rc.post(url, json={"image_schedule": {"retention": 5, "day_of_week": "MONDAY"}})
    rclock.advance(3 * WEEK)
    taken = scheduled(rax, WEB1)
    assert len(taken) == 3 and all(im.name.startswith("Weekly-web-1-") for im in taken)
    assert {dt.datetime.fromtimestamp(im.created_at, dt.UTC).strftime("%A")
            for im in taken} == {"Monday"}


async def test_a_busy_or_failing_server_is_retried_about_an_hour_later(
        rc: httpx.AsyncClient, rax: World, rclock: ManualClock) -> None:
    url = f"/compute/v2.1/servers/{WEB1}/rax-si-image-schedule"
    await rc.post(url, json={"image_schedule": {"retention": 7}})
    sched = rax.servers[WEB1].schedule
    assert sched is not None and sched.next_run is not None
    # A snapshot in flight at the slot (task_state set): the service tries again later.
    rax.inject("stuck", server=WEB1, task_state="image_uploading")
    rclock.advance(sched.next_run - rclock.now - 60)
    rax.create_image(WEB1, "long-manual")
    rclock.advance(120)
    assert scheduled(rax, WEB1) == []
    rax.inject("orphan", server=WEB1)  # the manual job's task clears
    rax.inject("upload_fail", server=WEB1)  # but the second try's image will be killed
    rclock.advance(3800)
    assert [im.status for im in scheduled(rax, WEB1)] == ["killed"]
    rax.inject("upload_fail", server=WEB1)  # and the third try's too
    rclock.advance(3700)
    assert [im.status for im in scheduled(rax, WEB1)] == ["killed", "killed"]
    rclock.advance(4 * 3600)
    assert len(scheduled(rax, WEB1)) == 2  # no fourth try: at most 3 a slot
    rclock.advance(DAY_SECONDS)  # the next day's slot is a fresh start
    assert [im.status for im in scheduled(rax, WEB1)] == ["killed", "killed", "active"]
