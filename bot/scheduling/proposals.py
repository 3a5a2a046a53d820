"""Writing a new change request: the one propose path of schedule changes (`requests`),
operations (`op_requests`), fleet schedules (`fleet_requests`) and Rackspace Scheduled Images
(`native`).

Each caller checks what is its own (the policy, the target, that something changes) and says
what it proposes as a `Proposal`. `write_request` then writes it in one transaction
(`Store.add_change_request`): the id, the pending request, the older pending requests of the
same server it replaces (`approvals.supersede`; a native request replaces only native ones and
is replaced only by them), the row and its audit, its card in the channel (`rows.request_plan`)
and a DM copy of the card for each approver (`direct.recipients`, issue 19). A proposal races
only decisions of older requests of its server: on a conflict it reads them again, a few times.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.errors import ConflictingUpdate, ImagebotError, PermissionDenied
from bot.policy import ChannelPolicy, refuse
from bot.scheduling.approvals import ApprovalRules, ChangeRequest, Kind, new_request
from bot.scheduling.approvals import supersede as supersede_requests
from bot.scheduling.direct import copy_key, copy_message, recipients
from bot.scheduling.due import ScheduleSpec
from bot.scheduling.messages import approval_message
from bot.scheduling.operations import ScheduleOp
from bot.scheduling.ports import Context
from bot.scheduling.retention import RetainableImage
from bot.scheduling.rows import approval_view, request_plan, to_request
from bot.store import AuditEntry, OutboxItem, RequestPlan, RequestRow, Store
from bot.vocabulary import OutboxKind, RequestStatus

log = logging.getLogger(__name__)

PROPOSE_TRIES = 3  # a proposal races only decisions of older requests for the same server

# The card of a request as it is at `now` (the channel message; the DM copies show the same).
CardRenderer = Callable[[ChangeRequest, datetime], dict[str, Any]]


@dataclass(frozen=True)
class Proposal:
    """One change request to write, as its caller checked it.

    `server_id` is the request's key (a server id, or a fleet's `fleet:...` key); `old_spec` /
    `new_spec` are the specs as stored (with what `spec_to_dict` does not carry: `verify`, a
    fleet's `target`); `audit` holds the caller's own fields of the `request_created` entry;
    `noun` names the key in the answer when the retries run out."""

    kind: Kind
    server_id: str
    server_ref: str
    server_name: str
    old: ScheduleSpec | None
    new: ScheduleSpec | None
    old_spec: Mapping[str, Any] | None
    new_spec: Mapping[str, Any] | None
    user: str
    channel: str
    channel_name: str | None
    rules: ApprovalRules
    card: CardRenderer
    operation: ScheduleOp | None = None
    native: bool = False
    audit: Mapping[str, Any] = field(default_factory=dict)
    noun: str = "server"


def standard_card(server_label: str, rules: ApprovalRules, notify: str | None,
                  doomed: Iterable[RetainableImage] = (), kept: Iterable[RetainableImage] = (),
                  wrap: Callable[[dict[str, Any]], dict[str, Any]] | None = None
                  ) -> CardRenderer:
    """The bot's own approval card (`messages.approval_message` over `rows.approval_view`),
    optionally reshaped by `wrap` (a fleet adds its matched servers)."""
    doomed, kept = tuple(doomed), tuple(kept)

    def render(request: ChangeRequest, now: datetime) -> dict[str, Any]:
        card = approval_message(approval_view(request, server_label, rules, notify, now,
                                              doomed, kept), now)
        return wrap(card) if wrap else card

    return render


def plan_of(proposal: Proposal, request_id: str, now: datetime,
            pending: Iterable[ChangeRequest], copies: tuple[str, ...]) -> RequestPlan:
    """What `add_change_request` writes for `proposal` as request `request_id` (pure)."""
    p = proposal
    req = new_request(id=request_id, kind=p.kind, server=p.server_id, old=p.old, new=p.new,
                      requested_by=p.user, channel=p.channel, now=now, rules=p.rules,
                      operation=p.operation)
    replaced = supersede_requests(pending, req, now)
    values: dict[str, Any] = {
        "kind": p.kind, "server_id": p.server_id, "server_ref": p.server_ref,
        "server_name": p.server_name,
        "old_spec": dict(p.old_spec) if p.old_spec is not None else None,
        "new_spec": dict(p.new_spec) if p.new_spec is not None else None,
        "requested_by": p.user, "channel": p.channel, "channel_name": p.channel_name,
        "expires_at": req.expires_at, "status": RequestStatus.PENDING,
    }
    if p.native:
        values["native"] = 1
    if p.operation is not None:
        values |= {"operation": p.operation.kind, "operation_detail": p.operation.detail()}
    created = AuditEntry("request_created", request_id, p.user, {
        "kind": p.kind, "server_id": p.server_id, "server_name": p.server_name,
        "old": values["old_spec"], "new": values["new_spec"], **p.audit,
        "expires_at": req.expires_at.isoformat()})
    card = p.card(req, now)
    # Each approver's DM copy: the same card, said for which channel (m011).
    dms = [OutboxItem(kind=OutboxKind.DM_COPY, channel=approver,
                      payload={"request_id": request_id, "user": approver,
                               **copy_message(card, p.channel)},
                      thread_key=copy_key(request_id, approver))
           for approver in copies]
    return request_plan(request_id, user=p.user, channel=p.channel, values=values,
                        created=created, replaced=replaced, card=card, more_outbox=dms,
                        copies=copies)


async def proposer_policy(ctx: Context, user: str, ref: str, channel: str,
                          channel_name: str | None, doing: str) -> ChannelPolicy:
    """The channel's policy, once it lets `user` propose about `ref` (`policy.refuse`, the one
    check); `PermissionDenied` with its answer otherwise."""
    pol = ctx.channel_policy(channel, channel_name)
    refusal = await refuse(pol, user, ref, ctx.member_groups, doing=doing)
    if refusal:
        raise PermissionDenied(refusal)
    return pol


async def write_request(ctx: Context, proposal: Proposal) -> RequestRow:
    """Write `proposal` as a pending change request with its card and DM copies (see the
    module docstring); `ImagebotError` when the server's requests keep changing."""
    copies = await copy_recipients(ctx, proposal.rules, proposal.user)
    for _ in range(PROPOSE_TRIES):
        now = ctx.clock()
        pending = [to_request(r) for r in await ctx.store.run(
            Store.list_change_requests, statuses=[RequestStatus.PENDING],
            server_id=proposal.server_id) if bool(r.native) == proposal.native]

        def build(request_id: str, now: datetime = now,
                  pending: list[ChangeRequest] = pending) -> RequestPlan:
            return plan_of(proposal, request_id, now, pending, copies)

        try:
            row = await ctx.store.run(Store.add_change_request, build)
        except ConflictingUpdate:
            continue  # an older request was decided meanwhile; look again
        ctx.on_new_work()
        return row
    raise ImagebotError(f"Too many concurrent changes for this {proposal.noun}; try again.")


async def copy_recipients(ctx: Context, rules: ApprovalRules,
                          requester: str) -> tuple[str, ...]:
    """Who gets a DM copy of the request (`direct.recipients`): user groups are read from
    Slack here, before the transaction; one that cannot be read gets no copies (the channel
    message still asks its members)."""
    groups: dict[str, frozenset[str] | None] = {}
    for group in sorted(rules.approver_groups):
        if ctx.group_members is None:
            groups[group] = None
            continue
        try:
            groups[group] = await ctx.group_members(group)
        except ImagebotError as exc:
            log.warning("cannot read user group %s for DM copies: %s", group, exc)
            groups[group] = None
    chosen = recipients(rules, requester, groups)
    for note in chosen.notes:
        log.info("DM copies: %s", note)
    return chosen.users
