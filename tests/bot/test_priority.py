"""Acks first (bot/priority.py): while a Slack request is being answered, the background
loops' store, cloud and Slack calls wait for it (at most `max_wait`); calls made while serving
a request, or by the work it spawned, never wait. No sleeping: the waits are released by the
test itself."""

from __future__ import annotations

import asyncio
import contextvars
from pathlib import Path

import httpx

from bot.priority import AcksFirst, TakingTurns
from bot.store import AsyncStore, Store
from sandbox.system import running_system


async def _spin(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)  # let other tasks run (a yield, not a wait)


def _outside(coro: object) -> asyncio.Task[object]:
    """A task in a fresh context: what the engine or notifier would be (not serving)."""
    return asyncio.get_running_loop().create_task(coro, context=contextvars.Context())  # type: ignore[arg-type]


async def test_no_request_in_flight_no_wait() -> None:
    gate = AcksFirst()
    await gate.turn()
    assert gate.waits == 0 and gate.in_flight == 0


async def test_background_waits_until_the_last_request_is_answered() -> None:
    gate = AcksFirst(max_wait=60)
    first, second = gate.serving(), gate.serving()
    first.__enter__()
    second.__enter__()
    waiting = _outside(gate.turn())
    await _spin()
    assert not waiting.done() and gate.in_flight == 2
    first.__exit__(None, None, None)
    await _spin()
    assert not waiting.done()  # one is still being answered
    second.__exit__(None, None, None)
    await asyncio.wait_for(waiting, 5)
    assert gate.waits == 1 and gate.in_flight == 0


async def test_calls_while_serving_and_from_work_spawned_there_do_not_wait() -> None:
    gate = AcksFirst(max_wait=60)
    with gate.serving():
        await gate.turn()  # the request's own store read, directory lookup, ...
        spawned = asyncio.create_task(gate.turn())  # its answer after the ack
        await asyncio.wait_for(spawned, 5)
        assert gate.waits == 0


async def test_the_wait_is_bounded() -> None:
    gate = AcksFirst(max_wait=0)  # a request that never ends holds nothing back for long
    with gate.serving():
        await asyncio.wait_for(_outside(gate.turn()), 5)
    assert gate.waits == 1


async def test_the_cloud_transport_takes_turns() -> None:
    gate = AcksFirst(max_wait=60)
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        return httpx.Response(200, json={})

    client = httpx.AsyncClient(transport=TakingTurns(httpx.MockTransport(answer), gate.turn))
    serving = gate.serving()
    serving.__enter__()
    call = _outside(client.get("http://cloud.test/compute/servers"))
    await _spin()
    assert sent == []
    serving.__exit__(None, None, None)
    assert (await asyncio.wait_for(call, 5)).status_code == 200
    assert sent == ["/compute/servers"]
    await client.aclose()


async def test_a_store_connection_awaits_its_hook_before_each_call(tmp_path: Path) -> None:
    store = await AsyncStore.open(tmp_path / "bot.db")
    gate = AcksFirst(max_wait=60)
    store.before_call = gate.turn
    try:
        serving = gate.serving()
        serving.__enter__()
        read = _outside(store.run(Store.list_jobs))
        await _spin()
        assert not read.done()
        serving.__exit__(None, None, None)
        assert await asyncio.wait_for(read, 5) == []
    finally:
        await store.close()


async def test_the_runtime_holds_back_only_the_background() -> None:
    # Wiring: the engine/notifier connection, the cloud and the Web API wait for requests in
    # flight; the listeners' connection does not. A burst of creates still all land and run.
    async with running_system(speed=200, slack_rate_scale=20) as system:
        runtime = system.runtime
        gate = runtime.acks_first
        assert runtime.store.before_call == gate.turn and runtime.web.before_call == gate.turn
        assert runtime.listeners.store.before_call is None
        acks = await asyncio.gather(*(system.command("alice", "#ops", f"create web-{i} --now")
                                      for i in (1, 2)))
        assert all("Job J" in a.text for a in acks)
        assert gate.in_flight == 0
        await system.settle()
        done = {j.server_ref: j.state for j in await runtime.store.run(Store.list_jobs)}
        assert done == {"web-1": "succeeded", "web-2": "succeeded"}
