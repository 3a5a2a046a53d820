"""The World model under a manual clock: imaging state machine, backups, tokens, seeding."""

from __future__ import annotations

import pytest

from sandbox.cloud.model import (
    RateLimits,
    ScaledClock,
    SimError,
    World,
    stable_id,
)

WEB1 = stable_id("server", "web-1")


def test_snapshot_walks_task_states_and_image_statuses(world: World, clock) -> None:
    server = world.find_server("web-1")
    t0 = clock()
    image = world.create_image(server.id, "snap", {"purpose": "test"})
    seen: list[tuple[str | None, str]] = []
    for _ in range(200):
        s = world.get_server(server.id)
        im = world.get_image(image.id)
        pair = (s.task_state, im.status)
        if not seen or seen[-1] != pair:
            seen.append(pair)
        assert s.status == "ACTIVE" and s.vm_state == "active"
        clock.advance(0.5)
    assert seen == [
        ("image_snapshot_pending", "queued"),
        ("image_snapshot", "queued"),
        ("image_pending_upload", "queued"),
        ("image_uploading", "saving"),
        (None, "active"),
    ]
    # Durations follow the small-server trace: 1 + 3 + 14 + 80 s for a 20 GB disk.
    assert world.get_server(server.id).updated == pytest.approx(t0 + 98)
    assert im.size and im.size > 0 and im.checksum


def test_transitions_are_stamped_when_due_not_when_observed(world: World, clock) -> None:
    t0 = clock()
    world.create_image(WEB1, "snap")
    clock.advance(1000)
    server = world.get_server(WEB1)
    assert server.task_state is None
    assert server.updated == pytest.approx(t0 + 98)


def test_durations_scale_with_disk_and_speed(clock) -> None:
    fast = World(clock=clock, speed=10)
    t0 = clock()
    data1 = fast.find_server("data-1")  # 80 GB disk: 4x the reference
    fast.create_image(data1.id, "snap")
    clock.advance(1000)
    assert fast.get_server(data1.id).updated == pytest.approx(t0 + 98 * 4 / 10)


def test_image_properties_as_nova_sets_them(world: World) -> None:
    image = world.create_image(WEB1, "snap", {"imagebot_job_id": "J1"})
    props = image.properties
    assert props["instance_uuid"] == WEB1
    assert props["image_type"] == "snapshot"
    assert props["base_image_ref"] == world.servers[WEB1].image_id
    assert props["user_id"] == world.user_id
    assert props["imagebot_job_id"] == "J1"
    assert image.owner == world.project_id and image.visibility == "private"


def test_second_create_image_mid_snapshot_conflicts(world: World, clock) -> None:
    world.create_image(WEB1, "one")
    clock.advance(2)
    with pytest.raises(SimError) as err:
        world.create_image(WEB1, "two")
    assert err.value.status == 409
    assert err.value.message == (
        f"Cannot 'createImage' instance {WEB1} while it is in task_state image_snapshot")
    clock.advance(200)
    assert world.create_image(WEB1, "two").status == "queued"


def test_volume_backed_snapshot_is_zero_size_with_bdm(world: World) -> None:
    db1 = world.find_server("db-1")
    image = world.create_image(db1.id, "db-snap")
    assert image.status == "active" and image.size == 0
    bdm = image.properties["block_device_mapping"]
    assert bdm and bdm[0]["source_type"] == "snapshot"
    assert "base_image_ref" not in image.properties
    assert world.get_server(db1.id).task_state is None
    with pytest.raises(SimError) as err:
        world.create_image(db1.id, "b", backup_type="daily", rotation=1)
    assert err.value.status == 400


def test_backup_walks_backup_states_and_rotates(world: World, clock) -> None:
    ids = []
    for n in range(3):
        image = world.create_image(WEB1, f"b{n}", backup_type="daily", rotation=2)
        assert world.get_server(WEB1).task_state == "image_backup"
        assert image.properties["image_type"] == "backup"
        assert image.properties["backup_type"] == "daily"
        ids.append(image.id)
        clock.advance(200)
    assert world.get_server(WEB1).task_state is None
    with pytest.raises(SimError):
        world.get_image(ids[0])  # rotated away
    assert world.get_image(ids[1]).status == "active"
    assert world.get_image(ids[2]).status == "active"


def test_default_world_seeding(world: World) -> None:
    names = sorted(s.name for s in world.servers.values())
    assert names == ["app", "app", "data-1", "db-1", "web-1", "web-2"]
    apps = [s for s in world.servers.values() if s.name == "app"]
    assert apps[0].id != apps[1].id
    assert world.find_server("db-1").image_id is None
    data1 = world.find_server("data-1")
    assert data1.volumes and data1.flavor.ephemeral > 0
    assert World(clock=lambda: 5.0).find_server("web-1").id == WEB1  # deterministic ids


def test_extra_servers_are_unique_active_idle_and_varied(clock) -> None:
    world = World(clock=clock, extra_servers=2000)
    load = [s for s in world.servers.values() if s.name.startswith("load-")]
    assert len(load) == 2000
    assert {s.name for s in load} == {f"load-{i}" for i in range(1, 2001)}
    assert len({s.id for s in load}) == 2000
    assert all(s.status == "ACTIVE" and s.task_state is None and s.image_id for s in load)
    assert len({s.flavor.disk for s in load}) >= 3


def test_tokens_expire_and_can_be_revoked(clock) -> None:
    world = World(clock=clock, token_ttl=100)
    token = world.issue_token(["password"])
    assert world.check_token(token.id) is token
    clock.advance(99)
    assert world.check_token(token.id) is token
    clock.advance(2)
    assert world.check_token(token.id) is None
    fresh = world.issue_token(["password"])
    world.inject("revoke_tokens")
    assert world.check_token(fresh.id) is None
    assert world.check_token("nope") is None


def test_rate_limits_per_minute(clock) -> None:
    world = World(clock=clock, rate_limits=RateLimits(post_per_minute=2))
    assert world.check_rate("POST") is None
    assert world.check_rate("POST") is None
    wait = world.check_rate("POST")
    assert wait is not None and 1 <= wait <= 60
    clock.advance(wait)
    assert world.check_rate("POST") is None
    assert World(clock=clock).check_rate("POST") is None  # off by default


def test_scaled_clock_runs_faster() -> None:
    now = [100.0]
    scaled = ScaledClock(50, base=lambda: now[0])
    now[0] += 2
    assert scaled() == pytest.approx(200.0)


def test_changes_since_sees_every_transition(world: World, clock) -> None:
    world.create_image(WEB1, "snap")
    updates: list[str | None] = []
    for _ in range(120):
        clock.advance(1)
        since = clock() - 1
        page, _ = world.list_servers(changes_since=since)
        updates.extend(s.task_state for s in page if s.id == WEB1)
    assert [u for i, u in enumerate(updates) if i == 0 or updates[i - 1] != u] == [
        "image_snapshot", "image_pending_upload", "image_uploading", None]
