"""The one error tree of imagebot.

Foreign exceptions (httpx, slack_sdk, sqlite3, yaml, ...) are translated into these at the edge
that calls the foreign library. Everything a user may see goes through `user_message()`, which is
written for a person in Slack: what happened and what to do, never a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.imaging.jobs import Job


class ImagebotError(Exception):
    """Root of every error imagebot raises on purpose."""

    def user_message(self) -> str:
        """Text fit to show a Slack user."""
        return str(self)


# --- configuration -------------------------------------------------------------------------


class ConfigError(ImagebotError):
    """Bad or missing configuration; names the file and key when known."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None,
                 line: int | None = None) -> None:
        self.path = path
        self.key = key
        self.line = line
        where = ""
        if path:
            where = path
            if line is not None:
                where += f":{line}"
        if key:
            where = f"{where} [{key}]" if where else f"[{key}]"
        super().__init__(f"{where}: {message}" if where else message)


class PolicyError(ConfigError):
    """The channel policy file is invalid."""


# --- cloud ---------------------------------------------------------------------------------


class CloudError(ImagebotError):
    """Anything that went wrong talking to the cloud."""

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        self.request_id = request_id
        super().__init__(message)


class CloudUnavailable(CloudError):
    """Retryable: 5xx, timeouts, connection errors, rate limits that outlasted our patience."""

    retryable = True

    def user_message(self) -> str:
        return f"The cloud is unreachable right now ({self}). I will keep trying."


class CloudBadResponse(CloudUnavailable):
    """The cloud answered something we cannot read: not JSON, the wrong shape, too big, or too
    slow to finish. Retryable (a proxy's error page or a half-deployed service passes), but
    never a reason to guess."""

    def user_message(self) -> str:
        return f"The cloud sent an answer I cannot read ({self}). I will keep trying."


class RateLimited(CloudUnavailable):
    """413/429 with Retry-After."""

    def __init__(self, message: str, *, retry_after: float | None = None,
                 request_id: str | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message, request_id=request_id)


class CloudRejected(CloudError):
    """Final: the cloud understood and said no. Retrying the same request will not help."""

    retryable = False


class AuthFailed(CloudRejected):
    """Credentials were refused (401 after re-authenticating)."""

    def user_message(self) -> str:
        return f"The cloud refused my credentials: {self}"


class Forbidden(CloudRejected):
    """403 from the cloud: permission denied or a protected resource."""

    def user_message(self) -> str:
        return f"The cloud denied permission: {self}"


class ImageProtected(CloudRejected):
    """The bot was asked to delete a protected image: refused before Glance is called."""

    def __init__(self, image_id: str, name: str = "") -> None:
        self.image_id = image_id
        super().__init__(f"image {name or image_id} is protected; `/image unprotect` it "
                         "first if it really should go")

    def user_message(self) -> str:
        return f"I never delete a protected image: {self}."


class QuotaExceeded(CloudRejected):
    """An image quota (Glance 413 without Retry-After) or similar."""


class NotFound(CloudRejected):
    """A server or image does not exist; `suggestions` lists close names."""

    def __init__(self, kind: str, name: str, suggestions: Sequence[str] = (),
                 *, request_id: str | None = None) -> None:
        self.kind = kind
        self.name = name
        self.suggestions = tuple(suggestions)
        message = f"No {kind} named {name!r}"
        if self.suggestions:
            message += " (did you mean " + ", ".join(self.suggestions) + "?)"
        super().__init__(message, request_id=request_id)


class Ambiguous(CloudRejected):
    """Several servers share a name; `candidates` are (id, name) pairs."""

    def __init__(self, kind: str, name: str, candidates: Sequence[tuple[str, str]]) -> None:
        self.kind = kind
        self.name = name
        self.candidates = tuple(candidates)
        ids = ", ".join(cid for cid, _ in self.candidates)
        super().__init__(f"{len(self.candidates)} {kind}s are named {name!r}: {ids}. "
                         f"Use the id instead.")


class ServerBusy(CloudRejected):
    """409: the server has a task in progress (never retried blindly)."""

    def __init__(self, server: str, task_state: str | None, message: str = "",
                 *, request_id: str | None = None) -> None:
        self.server = server
        self.task_state = task_state
        text = f"Server {server} is busy (task state {task_state or 'unknown'})"
        if message:
            text += f": {message}"
        super().__init__(text, request_id=request_id)


# --- slack, permissions, jobs, approvals -----------------------------------------------------


class SlackError(ImagebotError):
    """A Slack Web API call failed in a way we could not absorb."""


class SlackUnavailable(SlackError):
    """Retryable: 429 after the client's own retries, 5xx, connection errors.

    `answered` is True when Slack sent an error response (so the call did nothing), False when
    the outcome is unknown (connection lost, timeout)."""

    def __init__(self, message: str, *, retry_after: float | None = None,
                 answered: bool = False) -> None:
        self.retry_after = retry_after
        self.answered = answered
        super().__init__(message)


class SlackRejected(SlackError):
    """Final: Slack answered ok=false (`code` is Slack's error string, e.g. not_in_channel)."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(f"Slack refused the call: {code}")


class PermissionDenied(ImagebotError):
    """The user may not do this here (policy)."""


class MembershipUnknown(SlackError):
    """Slack could not say who is in a channel; a decision that needs it is refused."""


class JobError(ImagebotError):
    """A job operation is not possible (unknown job, wrong state)."""


class InvalidTransition(JobError):
    """A job state change that the state machine does not allow."""

    def __init__(self, current: str, target: str) -> None:
        self.current = current
        self.target = target
        super().__init__(f"cannot go from {current} to {target}")


class ConflictingUpdate(JobError):
    """A compare-and-set lost: someone else changed the row first."""


class ServerInUse(JobError):
    """A new job would image a server one of the bot's own jobs is already imaging.

    `job` is that in-flight job, so the answer can name it and its phase."""

    def __init__(self, job: Job) -> None:
        self.job = job
        super().__init__(f"the server is already being imaged by {job.id}")


class StoreError(ImagebotError):
    """The database could not be opened, read or written (translated from sqlite3).

    Deliberately not a JobError: callers that drop work on JobError must not drop it because
    the disk was briefly locked or full.
    """


class ApprovalError(ImagebotError):
    """A change request cannot be decided (expired, already decided, self-approval, ...)."""


# --- schedules -----------------------------------------------------------------------------


class ScheduleError(ImagebotError):
    """A schedule or change request operation is not possible."""


class InvalidSchedule(ScheduleError):
    """A schedule that cannot run: unknown zone, bad day, retention out of range."""


class NoSuchSchedule(ScheduleError):
    """No schedule has this id (or not one this channel may see)."""


class NoSuchRequest(ScheduleError):
    """No change request has this id (or not one this channel may see)."""


# --- the service ---------------------------------------------------------------------------


class AlreadyRunning(ImagebotError):
    """Another imagebot process holds this database; a second one must not start."""


class NoScheduledImages(CloudRejected):
    """The cloud has no Rackspace Scheduled Images (`GET /extensions/rax-si-image-schedule`
    answered 404): `--native` needs a Rackspace cloud."""

    def user_message(self) -> str:
        return (f"{self} `--native` manages Rackspace Scheduled Images, a service of Rackspace "
                "Cloud Servers; without `--native` I image the server on this cloud myself.")
