"""Logging setup: plain or one JSON object per line, with secrets masked everywhere."""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

# The job the current task works on; every log line written meanwhile carries its id.
_current_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("imagebot_job",
                                                                          default=None)


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Tag every log record written inside the block (cloud calls included) with `job_id`."""
    token = _current_job.set(job_id)
    try:
        yield
    finally:
        _current_job.reset(token)


class JobContextFilter(logging.Filter):
    """Copies the current job id onto records that do not carry one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = _current_job.get()
        return True


class RedactingFilter(logging.Filter):
    """Replaces any known secret in a record's final message with `***`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s and len(s) >= 4)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for secret in self.secrets:
            message = message.replace(secret, "***")
        record.msg, record.args = message, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `job_id`/`request_id` extras become fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("job_id", "request_id", "cloud_request_id"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(*, json_lines: bool, secrets: Iterable[str] = (),
                      level: int = logging.INFO) -> None:
    """Install one handler on the root logger."""
    handler = logging.StreamHandler()
    handler.addFilter(JobContextFilter())
    handler.addFilter(RedactingFilter(secrets))
    handler.setFormatter(JsonFormatter() if json_lines else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(job_id)s]: "
                                           "%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # One line per cloud request is debug detail; our client logs request ids itself.
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))
