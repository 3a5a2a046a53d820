"""Schedule change requests and who may decide them: pure decisions, no I/O.

A change request ("R4") proposes setting or removing one server's schedule. Someone other than the
requester approves it (unless the channel allows self-approval); the requester may always withdraw
it by rejecting. Pending requests expire (expiry rejects, never approves), and a newer request for
the same server supersedes an older pending one, so two conflicting proposals never both apply.

`decide` never raises for a user's mistake: it returns a `Decision` that is either accepted (the
request with its new status) or a refusal with a message fit for Slack. The caller persists
`decision.request` when `decision.changed` (with compare-and-set on the old status).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Literal

from bot.errors import ApprovalError
from bot.scheduling.due import ScheduleSpec
from bot.scheduling.operations import ScheduleOp, conflicts
from bot.vocabulary import RequestStatus
from commands import ids

Kind = Literal["set", "off"]
Action = Literal["approve", "reject"]
STATUSES: tuple[RequestStatus, ...] = tuple(RequestStatus)
DEFAULT_EXPIRY = timedelta(hours=24)


@dataclass(frozen=True)
class ChangeRequest:
    """A proposed schedule change for one server and its fate."""

    id: str  # "R<n>"
    kind: Kind
    server: str  # the server id (names are not stable)
    old: ScheduleSpec | None  # the schedule when proposed (None: there was none)
    new: ScheduleSpec | None  # None for kind "off"
    requested_by: str  # Slack user id
    channel: str  # Slack channel id
    created_at: datetime
    expires_at: datetime
    status: RequestStatus = RequestStatus.PENDING
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    # A schedule operation (pause, resume, run-now, skip-next): kind "set" with new == old.
    operation: ScheduleOp | None = None

    def __post_init__(self) -> None:
        if not ids.is_canonical(ids.REQUEST, self.id):
            raise ValueError(f"change request ids look like R4, not {self.id!r}")
        if self.kind not in ("set", "off"):
            raise ValueError(f"kind must be 'set' or 'off', not {self.kind!r}")
        if (self.kind == "set") != (self.new is not None):
            raise ValueError("a 'set' request needs a new spec and an 'off' request has none")
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")

    @property
    def pending(self) -> bool:
        """Still waiting for a decision."""
        return self.status == RequestStatus.PENDING


def new_request(*, id: str, kind: Kind, server: str, old: ScheduleSpec | None,
                new: ScheduleSpec | None, requested_by: str, channel: str, now: datetime,
                rules: ApprovalRules, operation: ScheduleOp | None = None) -> ChangeRequest:
    """A fresh pending request whose expiry follows `rules`."""
    return ChangeRequest(id=id, kind=kind, server=server, old=old, new=new,
                         requested_by=requested_by, channel=channel, created_at=now,
                         expires_at=now + rules.expiry, operation=operation)


@dataclass(frozen=True)
class ApprovalRules:
    """Who may decide a channel's requests (built by `ChannelPolicy.approval_rules()`).

    With no approvers and no approver groups configured, any member other than the requester may
    approve. `approver_groups` are Slack user-group ids (S...); the caller resolves which groups
    the acting user belongs to and passes them to `decide` as `actor_groups`.
    """

    approvers: frozenset[str] = frozenset()
    approver_groups: frozenset[str] = frozenset()
    allow_self_approval: bool = False
    expiry: timedelta = DEFAULT_EXPIRY

    @property
    def restricted(self) -> bool:
        """True when only listed users / groups may approve."""
        return bool(self.approvers or self.approver_groups)

    def is_approver(self, user: str, user_groups: frozenset[str] = frozenset()) -> bool:
        """Listed by id or through a group (everyone is, when nobody is listed)."""
        if not self.restricted:
            return True
        return user in self.approvers or bool(self.approver_groups & user_groups)

    def who_may_approve(self, requester: str | None = None) -> str:
        """Slack mrkdwn naming who may approve, e.g. "<@U0BOB> or a member of <!subteam^S1>"."""
        if not self.restricted:
            if requester and not self.allow_self_approval:
                return f"any member of the channel other than {_user(requester)}"
            return "any member of the channel"
        names = [_user(u) for u in sorted(self.approvers)]
        names += [f"a member of <!subteam^{g}>" for g in sorted(self.approver_groups)]
        if len(names) == 1:
            return names[0]
        return ", ".join(names[:-1]) + " or " + names[-1]


def _user(user: str) -> str:
    return f"<@{user}>"


def when(moment: datetime, now: datetime) -> str:
    """`14:05 UTC`, with the date when it is not today (UTC)."""
    m = moment.astimezone(UTC)
    text = f"{m:%H:%M} UTC"
    if m.date() != now.astimezone(UTC).date():
        text += f" on {m.date().isoformat()}"
    return text


class _Unset(Enum):
    UNSET = "unset"


UNSET = _Unset.UNSET

Refusal = Literal["already_decided", "expired", "superseded", "self_approval", "not_approver",
                  "not_member", "stale"]


@dataclass(frozen=True)
class Decision:
    """The outcome of one click: accepted, or refused with a message for the clicker.

    `request` is the request as it should now be stored: with its new status when accepted, marked
    expired when the click found it expired, else unchanged.
    """

    accepted: bool
    request: ChangeRequest
    message: str
    refusal: Refusal | None = None
    changed: bool = False  # the caller must persist `request`

    def raise_if_refused(self) -> ChangeRequest:
        """The decided request, or `ApprovalError` carrying the refusal message."""
        if not self.accepted:
            raise ApprovalError(self.message)
        return self.request


def _refuse(request: ChangeRequest, code: Refusal, message: str,
            updated: ChangeRequest | None = None) -> Decision:
    return Decision(False, updated or request, message, code, changed=updated is not None)


def _expired(request: ChangeRequest) -> ChangeRequest:
    return dataclasses.replace(request, status=RequestStatus.EXPIRED,
                               decided_at=request.expires_at, decided_by=None,
                               reason="expired without a decision")


def decide(request: ChangeRequest, *, actor: str, action: Action, now: datetime,
           rules: ApprovalRules, actor_groups: frozenset[str] = frozenset(),
           reason: str | None = None,
           current: ScheduleSpec | None | _Unset = UNSET,
           members: frozenset[str] | None = None) -> Decision:
    """Apply one approve/reject click by `actor` at `now` under `rules`.

    Refusals: already decided (names who and when), expired (the request comes back marked
    expired), superseded, self-approval (unless allowed), not an approver (names who may), and,
    when `current` (the server's schedule now) is given, a stale request whose `old` no longer
    matches. The requester may always reject (withdraw) their own pending request.

    `members` (the request channel's members, when known): with no approvers listed, "any
    member of the channel" means exactly those; someone outside the channel is refused.
    """
    if action not in ("approve", "reject"):
        raise ValueError(f"action must be 'approve' or 'reject', not {action!r}")
    rid = request.id
    if request.status == RequestStatus.SUPERSEDED:
        return _refuse(request, "superseded",
                       f"{rid} was replaced by a newer request"
                       + (f" ({request.reason})." if request.reason else "."))
    if request.status == RequestStatus.EXPIRED:
        return _refuse(request, "expired",
                       f"{rid} expired at {when(request.expires_at, now)} without a decision. "
                       "Propose the change again if it is still wanted.")
    if request.status in (RequestStatus.APPROVED, RequestStatus.REJECTED):
        by = _user(request.decided_by) if request.decided_by else "someone"
        at = f" at {when(request.decided_at, now)}" if request.decided_at else ""
        return _refuse(request, "already_decided", f"{rid} was already {request.status} by "
                       f"{by}{at}.")
    if now >= request.expires_at:
        return _refuse(request, "expired",
                       f"{rid} expired at {when(request.expires_at, now)} without a decision. "
                       "Propose the change again if it is still wanted.",
                       updated=_expired(request))
    is_requester = actor == request.requested_by
    if not rules.restricted and members is not None and actor not in members \
            and not (is_requester and action == "reject"):
        return _refuse(request, "not_member",
                       f"Only {rules.who_may_approve(request.requested_by)} may "
                       f"{action} {rid}, and you are not a member of the channel.")
    if action == "reject":
        if not is_requester and not rules.is_approver(actor, actor_groups):
            return _refuse(request, "not_approver",
                           f"Only {rules.who_may_approve(request.requested_by)} or the "
                           f"requester may reject {rid}.")
        why = reason or ("withdrawn by the requester" if is_requester else None)
        done = dataclasses.replace(request, status=RequestStatus.REJECTED, decided_by=actor,
                                   decided_at=now, reason=why)
        verb = "withdrew" if is_requester else "rejected"
        return Decision(True, done, f"{_user(actor)} {verb} {rid}.", changed=True)
    if is_requester and not rules.allow_self_approval:
        return _refuse(request, "self_approval",
                       f"You cannot approve your own request {rid}; ask "
                       f"{rules.who_may_approve(request.requested_by)}.")
    if not rules.is_approver(actor, actor_groups):
        return _refuse(request, "not_approver",
                       f"You are not an approver here. {rid} may be approved by "
                       f"{rules.who_may_approve(request.requested_by)}.")
    if not isinstance(current, _Unset) and current != request.old:
        return _refuse(request, "stale",
                       f"{rid} is out of date: the schedule changed after it was proposed. "
                       "Propose the change again.")
    done = dataclasses.replace(request, status=RequestStatus.APPROVED, decided_by=actor,
                               decided_at=now, reason=reason)
    return Decision(True, done, f"{_user(actor)} approved {rid}.", changed=True)


def expire_due(requests: Iterable[ChangeRequest], now: datetime) -> list[ChangeRequest]:
    """The pending requests that have expired by `now`, marked expired (to persist and report)."""
    return [_expired(r) for r in requests if r.pending and now >= r.expires_at]


def supersede(requests: Iterable[ChangeRequest], newer: ChangeRequest,
              now: datetime) -> list[ChangeRequest]:
    """Older pending requests for `newer.server`, marked superseded by `newer` (to persist).

    Whoever proposes again for the same server replaces the pending proposal, so two conflicting
    proposals can never both be approved. Expired ones are left to `expire_due`. Schedule
    operations (pause, skip-next, ...) and changes supersede only what they conflict with
    (`operations.conflicts`); the others stay pending and are re-checked when approved.
    """
    return [
        dataclasses.replace(r, status=RequestStatus.SUPERSEDED, decided_by=newer.requested_by,
                            decided_at=now, reason=f"superseded by {newer.id}")
        for r in requests
        if r.pending and r.id != newer.id and r.server == newer.server and now < r.expires_at
        and conflicts(r.operation, newer.operation)
    ]
