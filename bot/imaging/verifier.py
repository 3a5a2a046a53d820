"""The restore-test shell: the cloud calls of `bot.imaging.verify`, committed step by step.

The engine ticks it. Each tick it queues the verification of every finished `--verify` job,
moves each open verification one step (boot, look, read the console, delete) and, every few
ticks, deletes verify servers that no open verification owns (found by their metadata: a crash
between the boot and the delete, or a delete that timed out). The state is in SQLite before
each cloud call that creates something, so a restart resumes or cleans up, never duplicates.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from bot.blocks import user_text
from bot.cloud.client import CloudClient
from bot.cloud.models import Server
from bot.cloud.pool import CloudPool
from bot.errors import (
    AuthFailed,
    CloudError,
    CloudUnavailable,
    ConfigError,
    ConflictingUpdate,
    NotFound,
)
from bot.imaging import verify, verify_messages
from bot.imaging.jobs import Job
from bot.imaging.verify import Verification, VerifyLimits, VerifyState, VStep
from bot.scheduling.messages import alert
from bot.store import AsyncStore, OutboxItem, Store
from bot.vocabulary import OutboxKind

log = logging.getLogger(__name__)

SWEEP_TICKS = 10  # and on the first tick after a start


class Verifier:
    """Drives verifications through the cloud; `tick()` returns the seconds to the next."""

    def __init__(self, store: AsyncStore, clouds: CloudClient | CloudPool, *,
                 clock: Callable[[], datetime], limits: VerifyLimits | None = None,
                 alerts_for: Callable[[Job], tuple[str | None, str | None]] | None = None,
                 on_change: Callable[[], None] | None = None) -> None:
        self.store = store
        self.clouds = CloudPool.of(clouds)
        self.clock = clock
        self.limits = limits or VerifyLimits()
        self.alerts_for = alerts_for or (lambda job: (None, None))
        self.on_change = on_change or (lambda: None)
        self.ticks = 0

    async def tick(self) -> float:
        """One pass over the open verifications (a cloud that is away delays only its own)."""
        self.ticks += 1
        await self.store.run(Store.start_job_verifications)
        current = await self.store.run(Store.open_verifications)
        for item in current:
            try:
                await self._step(item)
            except (CloudUnavailable, AuthFailed) as exc:  # next tick; the deadlines count
                log.info("verification %s waits for the cloud: %s", item.id, exc)
            except ConflictingUpdate:
                log.info("verification %s changed under us; skipping", item.id)
            except (CloudError, ConfigError) as exc:  # refused for good: say so, clean up
                log.warning("verification %s: %s", item.id, exc)
                message = exc.user_message() if isinstance(exc, CloudError) else str(exc)
                await self._apply(item, verify.rejected(item, message, self.clock(),
                                                        self.limits))
        if self.ticks % SWEEP_TICKS == 1:
            owed = await self.store.run(Store.undeleted_verifications)
            if owed:  # only once the bot has made test servers that may still be there
                await self._sweep(owed)
        left = await self.store.run(Store.open_verifications)
        return 3.0 if left else 30.0

    # --- steps ----------------------------------------------------------------------------

    async def _step(self, item: Verification) -> None:
        cloud = self.clouds.get(item.cloud)
        if item.state == verify.QUEUED:
            await self._boot(cloud, item)
        elif item.state == verify.BOOTING and item.server_id is None:
            await self._adopt_or_boot(cloud, item)
        elif item.state in (verify.BOOTING, verify.CONSOLE, verify.DELETING):
            await self._look(cloud, item)

    async def _boot(self, cloud: CloudClient, item: Verification) -> None:
        """Plan the boot, commit it, then ask for the server."""
        now = self.clock()
        try:
            image = await cloud.find_image(item.image_id or item.image_ref)
        except (CloudUnavailable, AuthFailed):
            raise
        except CloudError as exc:
            await self._apply(item, verify.fail(item, exc.user_message(), now, self.limits))
            return
        flavors = await cloud.list_flavors()
        networks = None
        if image.server_id:
            try:
                networks = await cloud.server_networks(image.server_id)
            except NotFound:
                networks = None  # the original server is gone: the default network
        plan, step = verify.plan_boot(item, image, flavors, networks=networks, now=now,
                                      limits=self.limits)
        booting = await self._apply(item, step)
        if plan is not None and booting is not None:
            await self._send_boot(cloud, booting, plan)

    async def _send_boot(self, cloud: CloudClient, item: Verification,
                         plan: verify.BootPlan) -> None:
        try:
            server_id = await cloud.boot_server(plan.name, str(item.image_id), plan.flavor.id,
                                                networks=plan.networks or None,
                                                metadata=plan.metadata)
        except (CloudUnavailable, AuthFailed):
            raise  # the server may exist: the next tick looks for it by metadata
        except CloudError as exc:
            await self._apply(item, verify.fail(dataclasses.replace(item, state=verify.QUEUED),
                                                f"The cloud refused to boot the image: "
                                                f"{exc.user_message()}", self.clock(),
                                                self.limits))
            return
        await self.store.run(Store.update_verification, item.id, expected=verify.BOOTING,
                             fields={"server_id": server_id})

    async def _adopt_or_boot(self, cloud: CloudClient, item: Verification) -> None:
        """A boot whose answer was lost (a crash, a timeout): find the server by metadata, or
        boot again (a few times at most)."""
        mine = [s for s in await cloud.list_servers()
                if s.metadata.get(verify.SERVER_METADATA_KEY) == item.id]
        if mine:
            await self.store.run(Store.update_verification, item.id, expected=verify.BOOTING,
                                 fields={"server_id": mine[0].id})
            return
        if item.boot_attempts >= verify.MAX_BOOT_ATTEMPTS:
            await self._apply(dataclasses.replace(item, state=verify.QUEUED), verify.fail(
                dataclasses.replace(item, state=verify.QUEUED),
                f"The boot did not go through after {item.boot_attempts} attempts.",
                self.clock(), self.limits), expected=verify.BOOTING)
            return
        await self.store.run(Store.update_verification, item.id, expected=verify.BOOTING,
                             target=verify.QUEUED)

    async def _look(self, cloud: CloudClient, item: Verification) -> None:
        now = self.clock()
        server: Server | None
        try:
            server = await cloud.get_server(str(item.server_id), disks=False)
        except NotFound:
            server = None
        console: str | None = None
        if item.state == verify.CONSOLE and server is not None:
            console = await cloud.console_output(str(item.server_id))
        if item.state == verify.DELETING and server is not None \
                and verify.should_delete(item, now, self.limits):
            try:
                await cloud.delete_server(str(item.server_id))
            except NotFound:
                server = None
            else:
                await self.store.run(Store.update_verification, item.id,
                                     expected=verify.DELETING,
                                     fields={"delete_requested_at": now})
                return  # look again next tick
        step = verify.advance(item, server=server, console=console, now=now,
                              limits=self.limits)
        done = await self._apply(item, step)
        if done is not None and done.state == verify.DELETING and done.server_id:
            try:  # at once, rather than a tick later
                await cloud.delete_server(done.server_id)
                await self.store.run(Store.update_verification, done.id,
                                     expected=verify.DELETING,
                                     fields={"delete_requested_at": self.clock()})
            except NotFound:
                pass

    async def _apply(self, item: Verification, step: VStep,
                     expected: VerifyState | None = None) -> Verification | None:
        """Commit a step with the messages its events call for."""
        if step.target is None and not step.fields:
            return None
        after = dataclasses.replace(item, state=step.target or item.state, **step.fields)
        result = await self.store.run(Store.update_verification, item.id,
                                      expected=expected or item.state, target=step.target,
                                      fields=dict(step.fields),
                                      outbox=await self._messages(after, step.events))
        self.on_change()
        if result.state in verify.TERMINAL and result.image_id and result.outcome:
            await self._mark_image(result)
        return result

    async def _messages(self, after: Verification, events: tuple[str, ...]
                        ) -> list[OutboxItem]:
        items: list[OutboxItem] = []
        for event in events:
            if event == "booting":
                items.append(self._say(after, verify_messages.verify_started(after), final=False))
            elif event == "result":
                failed = after.outcome != "passed"
                items.append(self._say(after, verify_messages.verify_result(after), final=failed))
                if failed:
                    items.extend(await self._alert(after))
        return items

    def _say(self, item: Verification, message: dict[str, Any], *, final: bool) -> OutboxItem:
        """In the job's thread when the verification has a job, else in the channel."""
        if item.job_id:
            return OutboxItem(kind=OutboxKind.REPLY, channel=item.channel, job_id=item.job_id,
                              thread_key=item.job_id, payload=dict(message) | {"final": final})
        return OutboxItem(kind=OutboxKind.CHANNEL_POST, channel=item.channel,
                          payload=dict(message))

    async def _alert(self, item: Verification) -> list[OutboxItem]:
        """A failed restore test of a job is a failed result in the notification channel."""
        if not item.job_id:
            return []
        job = await self.store.run(Store.get_job, item.job_id)
        notify, mention = self.alerts_for(job)
        if not notify or notify == item.channel:
            return []
        text = (f"Restore test {item.id} of job {job.id} ({user_text(job.server_label)}) in "
                f"<#{item.channel}> failed: {user_text(item.error or 'see the thread')}")
        return [OutboxItem(kind=OutboxKind.CHANNEL_POST, channel=notify,
                           payload=alert(text, mention))]

    async def _mark_image(self, item: Verification) -> None:
        """`imagebot_verified=passed|failed` on the image: retention and people can tell a
        verified image from a failed one. Best effort: the verdict is in the store."""
        try:
            await self.clouds.get(item.cloud).set_image_property(
                str(item.image_id), verify.VERIFIED_PROPERTY, str(item.outcome))
        except CloudError as exc:
            log.warning("cannot mark image %s as verified %s: %s", item.image_id,
                        item.outcome, exc)

    async def _sweep(self, owed: list[Verification]) -> None:
        """Delete verify servers no open verification owns (after a crash, a timed-out
        delete); an ended verification whose server is seen gone is marked deleted."""
        open_ids = {v.id for v in owed if v.state in verify.OPEN}
        for name in {v.cloud for v in owed}:
            try:
                cloud = self.clouds.get(name)
                servers = await cloud.list_servers()
                live = {s.id for s in servers if s.status != "DELETED"}
                for gone in [v for v in owed if v.cloud == name and v.state in verify.TERMINAL
                             and v.server_id not in live]:
                    await self.store.run(Store.update_verification, gone.id,
                                         expected=gone.state,
                                         fields={"deleted_at": self.clock()})
                for server in verify.leftovers(servers, open_ids):
                    log.warning("deleting left-over verify server %s (%s)", server.name,
                                server.id)
                    try:
                        await cloud.delete_server(server.id)
                    except NotFound:
                        pass
            except CloudError as exc:
                log.info("cannot sweep verify servers of cloud %s: %s", name or "default", exc)
