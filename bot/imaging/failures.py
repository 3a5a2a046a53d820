"""What a final cloud error means for a job: its failure cause and the fields that say so."""

from __future__ import annotations

from typing import Any

from bot.errors import (
    Ambiguous,
    AuthFailed,
    CloudError,
    CloudUnavailable,
    Forbidden,
    NotFound,
    ServerBusy,
)
from bot.vocabulary import FailureCode


def failure_fields(code: FailureCode, exc: Exception) -> dict[str, Any]:
    """The job fields of a failure: its cause, the user's message (and a busy task state)."""
    message = exc.user_message() if isinstance(exc, CloudError) else str(exc)
    fields: dict[str, Any] = {"error_code": code, "error": message}
    if isinstance(exc, ServerBusy):
        fields["task_state"] = exc.task_state
    return fields


def classify(exc: CloudError) -> FailureCode:
    """Failure cause for a final cloud error (see docs/ARCHITECTURE.md)."""
    if isinstance(exc, ServerBusy):
        return FailureCode.BUSY
    if isinstance(exc, Ambiguous):
        return FailureCode.AMBIGUOUS
    if isinstance(exc, NotFound):
        return FailureCode.NOT_FOUND
    if isinstance(exc, Forbidden | AuthFailed):
        return FailureCode.DENIED
    if isinstance(exc, CloudUnavailable):
        return FailureCode.UNREACHABLE
    return FailureCode.REJECTED
