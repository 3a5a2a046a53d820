"""`/image create` end to end: signed HTTP into the real Bolt app, the simulated cloud, the Slack
emulator, SQLite. Only clocks are fast; nothing is stubbed."""

from __future__ import annotations

from sandbox.system import running_system


def thread_texts(system, parent_ts: str) -> list[str]:
    return [m.text or "" for m in system.workspace.thread("C0OPS", parent_ts)]


async def test_create_now_happy_path_posts_every_phase_and_finishes() -> None:
    async with running_system(speed=200) as system:
        response = await system.command("alice", "#ops", "create web-1 --now")
        assert response.status_code == 200
        assert "J1" in response.text
        await system.settle()
        parents = [m for m in system.workspace.channel_messages("C0OPS") if not m.thread_ts]
        assert len(parents) == 1
        replies = thread_texts(system, parents[0].ts)
        joined = "\n".join(replies)
        assert "Writes may resume" in joined or "writes may resume" in joined
        assert ":white_check_mark:" in replies[-1]
        job = await system.runtime.store.get_job("J1")
        assert job.state == "succeeded" and job.image_id
        images = [i for i in system.world.images.values() if i.properties.get("imagebot_job_id") == "J1"]
        assert len(images) == 1
