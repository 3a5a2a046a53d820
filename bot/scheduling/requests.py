"""Change requests: the propose / decide shell around the pure `bot.scheduling.approvals`.

- `propose`: `/image schedule ...` creates a change request (never a schedule) and queues its
  approval message through the outbox (`channel_post`, thread_key = the request id, so its ts is
  found later with `Store.posted_message`); older pending requests for the server are superseded
  in the same transaction.
- `decide`: applies `approvals.decide` and persists it with compare-and-set on the request's
  status, upserting the server's schedule in the same transaction, so the first valid click
  wins; every decision and refusal lands in `audit`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import commands
from bot.errors import (
    ConflictingUpdate,
    ImagebotError,
    NoSuchRequest,
    PermissionDenied,
)
from bot.policy import DISABLED_TEXT, not_here
from bot.scheduling.approvals import (
    UNSET,
    ChangeRequest,
    Decision,
)
from bot.scheduling.approvals import decide as decide_request
from bot.scheduling.due import ScheduleSpec
from bot.scheduling.fleet_requests import fleet_spec_extra, propose_fleet
from bot.scheduling.op_requests import (
    operation_refused_at_approval,
    operation_values,
    retention_preview,
)
from bot.scheduling.operations import after_change
from bot.scheduling.ports import Context
from bot.scheduling.proposals import Proposal, proposer_policy, standard_card, write_request
from bot.scheduling.retention import RetainableImage
from bot.scheduling.rows import (
    active_spec,
    decision_fields,
    spec_of,
    spec_to_dict,
    to_request,
)
from bot.store import AuditEntry, RequestRow, Store
from bot.vocabulary import RequestStatus

log = logging.getLogger(__name__)

DECIDE_TRIES = 5


@dataclass(frozen=True)
class Outcome:
    """The result of one approve/reject attempt, for the person who tried."""

    accepted: bool
    message: str
    request: RequestRow


class ChangeRequests:
    """Proposals and decisions of schedule changes, from committed SQLite state."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def propose(self, request: commands.Schedule | commands.ScheduleOff, *, user: str,
                      channel: str, channel_name: str | None = None) -> RequestRow:
        """Create a change request for `request` and queue its approval message.

        Raises `PermissionDenied` (policy), `InvalidSchedule`, cloud errors (unknown server) or
        `ImagebotError` (nothing to change).
        """
        ctx = self.ctx
        if request.target is not None:  # a fleet: see `fleet_requests`
            return await propose_fleet(ctx, request, user=user, channel=channel,
                                       channel_name=channel_name)
        pol = await proposer_policy(ctx, user, request.server.text, channel, channel_name,
                                    "propose schedules")
        cloud = ctx.cloud(pol.cloud)
        server = await cloud.find_server(request.server.text)
        if not pol.may_touch(server.name):
            raise PermissionDenied(f"This channel may not image {server.name!r}.")
        existing = await ctx.store.run(Store.schedule_for_server, server.id)
        old = active_spec(existing)
        new: ScheduleSpec | None = None
        if isinstance(request, commands.ScheduleOff):
            if old is None:
                raise ImagebotError(f"{server.name} has no schedule to turn off.")
        else:
            new = spec_of(request)
            if new == old and request.verify == bool(existing and existing.verify) \
                    and request.keep_days == (existing.keep_days if existing else None):
                raise ImagebotError(f"{server.name} already has exactly that schedule.")
        doomed: list[RetainableImage] = []
        kept: list[RetainableImage] = []
        if new is not None and existing is not None:
            doomed, kept = await retention_preview(cloud, server.id, new.keep, existing.id,
                                                   keep_days=new.keep_days, now=ctx.clock())
        rules = pol.approval_rules()
        return await write_request(ctx, Proposal(
            kind="off" if new is None else "set", server_id=server.id,
            server_ref=request.server.text, server_name=server.name, old=old, new=new,
            old_spec=spec_to_dict(old) if old else None,
            new_spec=(spec_to_dict(new) | _verify_flag(request)) if new else None,
            user=user, channel=channel, channel_name=channel_name, rules=rules,
            card=standard_card(server.name, rules, pol.notify_channel, doomed, kept)))

    async def _request_here(self, request_id: str, actor: str, action: str,
                            channel: str | None) -> RequestRow:
        """The request, when `channel` (None: anywhere) may see it; `NoSuchRequest` else."""
        ctx = self.ctx
        try:
            row = await ctx.store.run(Store.get_change_request, request_id)
        except ImagebotError:  # unknown, or not an id at all
            if channel is None:
                raise
            raise NoSuchRequest(not_here("change request", request_id.upper())) from None
        if channel is not None and row.channel != channel:
            await ctx.store.run(Store.add_audit, [AuditEntry("decision_refused", row.id, actor, {
                "action": action, "refusal": "other_channel", "channel": channel})])
            raise NoSuchRequest(not_here("change request", row.id))
        return row

    async def decide(self, request_id: str, *, actor: str, action: str,
                     reason: str | None = None, channel: str | None = None,
                     direct: bool = False) -> Outcome:
        """Approve or reject a request as `actor`; the first valid decision wins.

        Permission is checked against the policy as it is now (not as it was when the message
        was posted). `channel` is where the decision was typed or clicked: a request is decided
        only in its own channel (another channel is told it does not exist there:
        `NoSuchRequest`), never in a disabled one. With no approvers listed, only the channel's
        members decide. Refusals are audited too.

        `direct`: the click came from a surface of the actor's own (their DM copy of the
        request, their App Home), where "its own channel" cannot hold. The actor must then be
        an approver by the channel's policy as it is now: a named approver, or, with none
        named, a member of the request's channel (an unknown membership admits no one).
        """
        if action not in ("approve", "reject"):
            raise ValueError(f"unknown action {action!r}")
        ctx = self.ctx
        for _ in range(DECIDE_TRIES):
            row = await self._request_here(request_id, actor, action,
                                           None if direct else channel)
            request = to_request(row)
            policy = ctx.channel_policy(row.channel, row.channel_name)
            if not policy.enabled:
                await ctx.store.run(Store.add_audit, [AuditEntry("decision_refused", row.id,
                    actor, {"action": action, "refusal": "disabled"})])
                return Outcome(False, DISABLED_TEXT, row)
            rules = policy.approval_rules()
            groups = await ctx.groups(actor, rules)
            members: frozenset[str] | None = None
            if not rules.restricted:
                if ctx.directory is not None:
                    members = await ctx.directory.members(row.channel)
                elif direct:  # nobody is known to be in the channel: admit no one
                    members = frozenset()
            existing = await ctx.store.run(Store.schedule_for_server, row.server_id)
            current = active_spec(existing)
            now = ctx.clock()
            decision: Decision = decide_request(
                request, actor=actor, action=action, now=now,  # type: ignore[arg-type]
                rules=rules, actor_groups=groups, reason=reason,
                # A native request changes the cloud's schedule, not ours: nothing to be stale
                # against here (the listener does not read the cloud; the loop applies it).
                current=current if action == "approve" and not row.native else UNSET,
                members=members)
            if not decision.accepted:
                audit = [AuditEntry("decision_refused", row.id, actor,
                                    {"action": action, "refusal": decision.refusal})]
                if decision.changed:  # found expired at click time
                    try:
                        row = await ctx.store.run(Store.update_change_request,
                            row.id, expected=RequestStatus.PENDING,
                            fields=decision_fields(decision.request),
                            audit=[AuditEntry("request_expired", row.id, None, {}), *audit])
                    except ConflictingUpdate:
                        continue
                    ctx.wake.set()
                else:
                    await ctx.store.run(Store.add_audit, audit)
                return Outcome(False, decision.message, row)
            done = decision.request
            stale = (operation_refused_at_approval(done, existing, now)
                     if done.status == RequestStatus.APPROVED else None)
            if stale:  # an operation whose moment passed (the slot to skip, ...)
                await ctx.store.run(Store.add_audit, [AuditEntry("decision_refused", row.id,
                    actor, {"action": action, "refusal": "stale"})])
                return Outcome(False, stale, row)
            schedule = None
            if done.status == RequestStatus.APPROVED and not row.native:
                schedule = (operation_values(row, done, now) if done.operation else
                            schedule_values(row, done, now)
                            | after_change(row.kind, existing.status if existing else None))
            audit = [AuditEntry(f"request_{done.status}", row.id, actor,
                                {"reason": done.reason, "kind": row.kind,
                                 "server_id": row.server_id})]
            if schedule is not None:
                what = done.operation.kind if done.operation else row.kind
                audit.append(AuditEntry(f"schedule_{what}", row.server_id, actor,
                                        {"request": row.id, "spec": row.new_spec}))
            try:
                row = await ctx.store.run(Store.update_change_request,
                    row.id, expected=RequestStatus.PENDING, fields=decision_fields(done),
                    audit=audit, schedule=schedule)
            except ConflictingUpdate:
                continue  # someone else decided first: the next pass tells who
            ctx.wake.set()
            ctx.on_new_work()
            return Outcome(True, decision.message, row)
        raise ImagebotError(f"{request_id} keeps changing; try again.")


def _verify_flag(request: commands.Schedule | commands.ScheduleOff) -> dict[str, Any]:
    """`--verify` (and `--keep-days`) as the stored spec carries them (absent when not asked:
    older specs match)."""
    return fleet_spec_extra(request) if isinstance(request, commands.Schedule) else {}


def schedule_values(row: RequestRow, done: ChangeRequest, now: datetime) -> dict[str, Any]:
    """The schedule row an approved request writes (the server's one row, replaced in place)."""
    at = done.decided_at or now
    if row.kind == "off":
        return {"server_id": row.server_id, "status": "off", "approved_by": done.decided_by,
                "request_id": row.id, "effective_at": at}
    spec = dict(row.new_spec or {})
    return {"server_id": row.server_id, "server_ref": row.server_ref,
            "server_name": row.server_name, "frequency": spec["frequency"],
            "day": spec.get("day"), "at": spec["at"], "tz": spec["tz"], "keep": spec["keep"],
            "verify": int(bool(spec.get("verify"))),
            "target": spec.get("target"), "keep_days": spec.get("keep_days"),
            "channel": row.channel, "channel_name": row.channel_name,
            "created_by": row.requested_by, "approved_by": done.decided_by,
            "request_id": row.id, "effective_at": at, "last_slot": None,
            "status": "active"}
