"""Issue 13 §4: mistakes are answered privately, not broadcast. Signed HTTP into the real Bolt
app, the simulated cloud, the Slack emulator, SQLite; nothing is stubbed."""

from __future__ import annotations

from bot.store import Store
from sandbox.system import System, running_system

OPS = "C0OPS"
SECRET = "G0SECRET"  # private; alice and bob are members, the bot is not


def seen_by(system: System, user: str, via: str | None = None) -> list[str]:
    return [e.text or "" for e in system.workspace.ephemerals(user)
            if via is None or e.via == via]


async def _failed(system: System, job_id: str) -> bool:
    return (await system.runtime.store.run(Store.get_job, job_id)).state == "failed"


async def test_unknown_and_ambiguous_servers_are_answered_to_the_requester_alone() -> None:
    async with running_system(speed=200, slack_rate_scale=20) as system:
        missing = await system.command("alice", "#ops", "create web-99")
        ambiguous = await system.command("alice", "#ops", "create app --now")
        assert "J1" in missing.text and "J2" in ambiguous.text
        await system.settle()
        one = await system.runtime.store.run(Store.get_job, "J1")
        two = await system.runtime.store.run(Store.get_job, "J2")
        assert (one.state, one.error_code) == ("failed", "not_found")
        assert (two.state, two.error_code) == ("failed", "ambiguous")
        # Nothing at all went to the channel: no card, no thread, no broadcast.
        assert system.workspace.all_messages(OPS) == []
        assert not system.workspace.calls("chat.postMessage")
        told = seen_by(system, "U0ALICE", via="chat.postEphemeral")
        [not_found] = [t for t in told if "J1" in t]
        assert "web-99" in not_found and "not found" in not_found
        assert "web-1" in not_found  # the cloud client's suggestions
        [several] = [t for t in told if "J2" in t]
        candidates = [s.id for s in system.world.servers.values() if s.name == "app"]
        assert len(candidates) == 2 and all(c in several for c in candidates)
        assert seen_by(system, "U0BOB") == []
        # Only the acks went through the command's response_url; the answers are ephemerals.
        assert all("not found" not in t for t in seen_by(system, "U0ALICE", via="response_url"))
        assert one.announced_at is None and two.announced_at is None


async def test_a_private_answer_falls_back_to_the_response_url_where_the_bot_is_no_member(
        ) -> None:
    async with running_system(speed=200, slack_rate_scale=20) as system:
        await system.command("alice", SECRET, "create web-99")
        await system.wait_for(lambda: _failed(system, "J1"))
        await system.settle()
        told = seen_by(system, "U0ALICE", via="response_url")
        assert any("web-99" in t and "not found" in t for t in told), told
        assert system.workspace.all_messages(SECRET) == []
        # chat.postEphemeral was tried first and refused (the bot is not in the channel).
        assert [c.error for c in system.workspace.calls("chat.postEphemeral")] == [
            "not_in_channel"]


async def test_a_found_server_gets_its_card_only_after_resolution() -> None:
    async with running_system(speed=200, slack_rate_scale=20) as system:
        await system.command("alice", "#ops", "create web-1")
        await system.wait_for(lambda: system.workspace.channel_messages(OPS))
        [card] = system.workspace.channel_messages(OPS)
        job = await system.runtime.store.run(Store.get_job, "J1")
        assert job.server_id and job.announced_at is not None
        assert job.server_id in str(card.blocks) or "web-1" in str(card.blocks)
        assert "Start snapshot" in str(card.blocks)
        # Resolved before it was posted: the card never needed a correcting edit.
        assert card.edits == []


async def test_a_second_create_for_a_server_being_imaged_is_refused_at_the_ack() -> None:
    # At speed 20 the upload lasts seconds: long enough to ask again in the middle of it.
    async with running_system(speed=20, slack_rate_scale=20) as system:
        await system.command("alice", "#ops", "create web-1 --now")
        await system.wait_for(lambda: _state_is(system, "J1", "uploading"))
        web1 = system.world.find_server("web-1")
        by_name = await system.command("bob", "#ops", "create web-1")
        by_id = await system.command("bob", "#ops", f"create {web1.id} --now")
        assert "J1" in by_name.text and "uploading" in by_name.text and " in)" in by_name.text
        assert "J1" in by_id.text and "uploading" in by_id.text
        # Another channel is told that the server is busy, not which job of #ops it is.
        elsewhere = await system.command("alice", "#ops-alerts", "create web-1")
        assert "J1" not in elsewhere.text and "another job" in elsewhere.text
        await system.settle()
        assert [j.id for j in await system.runtime.store.run(Store.list_jobs)] == ["J1"]
        parents = [m for m in system.workspace.channel_messages(OPS) if not m.thread_ts]
        assert len(parents) == 1
        assert not [m for m in system.workspace.all_messages(OPS) if "busy" in (m.text or "")]


async def test_a_clash_seen_only_at_resolution_is_refused_privately() -> None:
    async with running_system(speed=200, slack_rate_scale=20) as system:
        web1 = system.world.find_server("web-1")
        # While the cloud cannot list servers, both jobs wait unresolved; the ack cannot know
        # that a name and a UUID are the same server.
        system.world.inject("http", path=r"/servers", method="GET", status=503, count=10_000)
        first = await system.command("alice", "#ops", "create web-1 --now")
        second = await system.command("bob", "#ops", f"create {web1.id} --now")
        assert "J1" in first.text and "J2" in second.text
        system.world.inject("clear")
        await system.settle()
        one = await system.runtime.store.run(Store.get_job, "J1")
        two = await system.runtime.store.run(Store.get_job, "J2")
        assert one.state == "succeeded"
        assert (two.state, two.error_code) == ("failed", "duplicate")
        assert two.announced_at is None
        [told] = [t for t in seen_by(system, "U0BOB", via="chat.postEphemeral") if "J2" in t]
        assert "J1" in told and "being imaged" in told
        parents = [m for m in system.workspace.channel_messages(OPS) if not m.thread_ts]
        assert len(parents) == 1 and "J1" in (parents[0].text or "")
        assert len([i for i in system.world.images.values()
                    if i.properties.get("imagebot_job_id") in ("J1", "J2")]) == 1


async def test_buttons_reach_a_channel_without_the_bot_through_the_response_url() -> None:
    async with running_system(speed=200, slack_rate_scale=20) as system:
        await system.command("alice", SECRET, "create web-1")
        cards = await system.wait_for(lambda: [
            e for e in system.workspace.ephemerals("U0ALICE")
            if e.via == "response_url" and "Start snapshot" in str(e.blocks)])
        [card] = cards
        assert "/invite @imagebot" in str(card.blocks)
        response = await system.deliverer.click("alice", SECRET, card.ts, "job_start", "J1")
        assert response.status_code == 200
        await system.settle()
        job = await system.runtime.store.run(Store.get_job, "J1")
        assert job.state == "succeeded" and job.confirmed_by == "U0ALICE"
        # The clicked card was replaced: no buttons left to press.
        assert card.edits and "Start snapshot" not in str(card.blocks)
        told = seen_by(system, "U0ALICE", via="response_url")
        assert any("Writes may resume" in t for t in told)
        assert ":white_check_mark:" in told[-1]
        assert system.workspace.all_messages(SECRET) == []


async def test_cancel_on_a_response_url_card_cancels_and_replaces_the_card() -> None:
    async with running_system(speed=200, slack_rate_scale=20) as system:
        await system.command("alice", SECRET, "create web-1")
        [card] = await system.wait_for(lambda: [
            e for e in system.workspace.ephemerals("U0ALICE")
            if e.via == "response_url" and "Cancel" in str(e.blocks)])
        await system.deliverer.click("alice", SECRET, card.ts, "job_cancel", "J1")
        await system.settle()
        assert (await system.runtime.store.run(Store.get_job, "J1")).state == "cancelled"
        assert "cancelled" in (card.text or "") and "job_cancel" not in str(card.blocks)
        assert not [i for i in system.world.images.values()
                    if i.properties.get("imagebot_job_id") == "J1"]


async def _state_is(system: System, job_id: str, state: str) -> bool:
    return (await system.runtime.store.run(Store.get_job, job_id)).state == state


async def test_start_on_a_waiting_card_while_another_job_images_the_server_is_refused_privately(
        ) -> None:
    # Issue 13 §4, the click path: as the create path's refusal, only the clicker is told
    # (naming the running job and its phase); the card and its job keep waiting.
    async with running_system(speed=20, slack_rate_scale=20) as system:
        await system.command("alice", "#ops", "create web-1")
        [card] = await system.wait_for(lambda: [m for m in system.workspace.channel_messages(OPS)
                                                if "Start snapshot" in str(m.blocks)])
        # Created by id while J1 waits: not refused (J1 is not in flight), and starts at once.
        web1 = system.world.find_server("web-1")
        assert "J2" in (await system.command("bob", "#ops", f"create {web1.id} --now")).text
        await system.wait_for(lambda: _state_is(system, "J2", "uploading"))
        shown_before = (card.text, str(card.blocks), len(card.edits))
        response = await system.deliverer.click("alice", OPS, card.ts, "job_start", "J1")
        assert response.status_code == 200
        # The answer goes to the click's response_url after the click's HTTP answer.
        [told] = await system.wait_for(lambda: [
            t for t in seen_by(system, "U0ALICE", via="response_url") if "J2" in t])
        assert "web-1 is being imaged by J2" in told and "uploading" in told and " in)" in told
        assert not [t for t in seen_by(system, "U0BOB") if "being imaged" in t]
        one = await system.runtime.store.run(Store.get_job, "J1")
        assert one.state == "awaiting_confirmation" and one.confirmed_by is None
        assert (card.text, str(card.blocks), len(card.edits)) == shown_before
        assert not [m for m in system.workspace.all_messages(OPS) if "busy" in (m.text or "")]
        # Once J2 is done, the same button on the same card starts J1.
        await system.wait_for(lambda: _state_is(system, "J2", "succeeded"))
        await system.deliverer.click("alice", OPS, card.ts, "job_start", "J1")
        await system.settle()
        one = await system.runtime.store.run(Store.get_job, "J1")
        assert (one.state, one.confirmed_by) == ("succeeded", "U0ALICE")
        assert len([i for i in system.world.images.values()
                    if i.properties.get("imagebot_job_id") in ("J1", "J2")]) == 2


async def test_start_while_a_job_of_another_channel_images_the_server_names_no_job() -> None:
    async with running_system(speed=20, slack_rate_scale=20) as system:
        await system.command("alice", "#ops", "create web-1")
        [card] = await system.wait_for(lambda: [m for m in system.workspace.channel_messages(OPS)
                                                if "Start snapshot" in str(m.blocks)])
        await system.command("alice", "#ops-alerts", "create web-1 --now")
        await system.wait_for(lambda: _state_is(system, "J2", "uploading"))
        await system.deliverer.click("alice", OPS, card.ts, "job_start", "J1")
        [told] = await system.wait_for(lambda: [
            t for t in seen_by(system, "U0ALICE", via="response_url") if "being imaged" in t])
        assert "another job" in told and "J2" not in told
        assert (await system.runtime.store.run(Store.get_job, "J1")).state == \
            "awaiting_confirmation"
