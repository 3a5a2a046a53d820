"""Logging setup: plain or one JSON object per line, with secrets masked everywhere."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import threading
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


# Secrets recognisable by their shape or by the name they are given, wherever they appear:
# Slack tokens, and the value after a password / key / secret / token name (an X-Auth-Token
# header, `"password": "..."`, `api_key=...`, Keystone's `"token": {"id": "..."}`).
_SHAPED = re.compile(r"\b(?:xox[abposre]|xapp)-[A-Za-z0-9-]{6,}")
_NAMED = re.compile(
    r"""(?ix)
    ( (?:x-auth-token|x-subject-token|x-storage-token|password|passwd|api[_-]?key|apikey
       |secret|client_secret|token|authorization)
      ["']? \s* [:=] \s* ["']? (?:bearer\s+)? (?:\{\s*["']?id["']?\s*:\s*["']?)? )
    ( [^\s"',;}]{4,} )""")

MAX_MESSAGE = 4_000   # characters of a log message; the rest is cut (a body cannot flood logs)
MAX_TRACEBACK = 16_000
# Tokens learned at runtime that stay masked: a new one per login (hours apart), so these
# cover every token still valid across a few clouds, and a long run does not grow the list.
MAX_LEARNED = 64


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret and every secret-shaped value replaced by `***`."""
    for secret in secrets:
        text = text.replace(secret, "***")
    text = _SHAPED.sub("***", text)
    return _NAMED.sub(lambda m: m.group(1) + "***", text)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def escape_controls(text: str) -> str:
    """Control characters (newlines above all), line separators and bidi overrides as
    visible escapes, so no logged value can start a line of its own or reorder one."""
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    return _CONTROL.sub(lambda m: named.get(m.group(), f"\\u{ord(m.group()):04x}"), text)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"… ({len(text) - limit} more characters)"


class LearnedSecrets:
    """Secrets the bot learns while it runs (every cloud token a login yields), for the log
    filter to mask by their exact value: a token need not look like one. The cloud clients
    add (`add` is their `on_token`), the `RedactingFilter` reads; both may run on any thread
    (keystoneauth logs from its worker threads), so the values are one tuple, replaced whole
    under a lock. Keeps the newest `keep`."""

    def __init__(self, keep: int = MAX_LEARNED) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self._values: tuple[str, ...] = ()

    def add(self, secret: str) -> None:
        """Mask `secret` from now on (values under 4 characters are ignored)."""
        if not secret or len(secret) < 4:
            return
        with self._lock:
            if secret not in self._values:
                self._values = (*self._values, secret)[-self._keep:]

    def values(self) -> tuple[str, ...]:
        """The secrets learned so far, oldest first."""
        return self._values


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's final message (its arguments merged in) and in its
    traceback (`exc_text`), and cuts both to a fixed length. Known secrets by value: those of
    the configuration (Slack's, the cloud's password, API key and application-credential
    secret) and those `learned` at runtime (cloud tokens); tokens and the like also by shape
    or name."""

    def __init__(self, secrets: Iterable[str], learned: LearnedSecrets | None = None) -> None:
        super().__init__()
        self.static = frozenset(s for s in secrets if s and len(s) >= 4)
        self.learned = learned if learned is not None else LearnedSecrets()
        self._cache: tuple[tuple[str, ...], tuple[str, ...]] = ((), self._sorted(()))

    def _sorted(self, learned: tuple[str, ...]) -> tuple[str, ...]:
        # Longest first, so a secret containing another is masked whole.
        return tuple(sorted(self.static.union(learned), key=len, reverse=True))

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret masked by value now, longest first."""
        learned = self.learned.values()
        seen, ordered = self._cache
        if learned is not seen:  # a login added a token: sort again (rare)
            ordered = self._sorted(learned)
            self._cache = (learned, ordered)
        return ordered

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line (nor raise here)
            message = f"{record.msg!r} {record.args!r}"
        secrets = self.secrets
        record.msg, record.args = _cut(redact(message, secrets), MAX_MESSAGE), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _cut(redact(record.exc_text, secrets), MAX_TRACEBACK)
        if record.stack_info:
            record.stack_info = _cut(redact(record.stack_info, secrets), MAX_TRACEBACK)
        return True


class TextFormatter(logging.Formatter):
    """`at LEVEL logger [job]: message`, one line per record: control characters in the
    message are escaped, and traceback lines are indented under `  | `, so nothing a request
    or a cloud sends can forge a line of its own."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(job_id)s]: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        saved = (record.msg, record.args, record.exc_text, record.stack_info)
        record.msg, record.args = escape_controls(_cut(record.getMessage(), MAX_MESSAGE)), None
        extra: list[str] = []
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        for block in (record.exc_text, record.stack_info):
            if block:
                extra += ["  | " + escape_controls(line) for line in block.splitlines()]
        record.exc_text, record.stack_info = None, None
        exc_info, record.exc_info = record.exc_info, None
        try:
            line = super().format(record)
        finally:
            record.msg, record.args, record.exc_text, record.stack_info = saved
            record.exc_info = exc_info
        return "\n".join([line, *extra])


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `job_id`/`request_id` extras become fields. json.dumps with
    ASCII output escapes every control and non-ASCII character, so a value stays in its field."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _cut(record.getMessage(), MAX_MESSAGE),
        }
        for key in ("job_id", "request_id", "cloud_request_id"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = _cut(str(value), 200)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=True)


def cloud_secrets(config: object) -> tuple[str, ...]:
    """The secret fields of a loaded cloud config (password, API key, application-credential
    secret, a preset token), for the log filter."""
    names = ("password", "api_key", "application_credential_secret", "token", "auth_token")
    return tuple(str(v) for v in (getattr(config, n, None) for n in names) if v)


def configure_logging(*, json_lines: bool, secrets: Iterable[str] = (),
                      level: int = logging.INFO,
                      learned: LearnedSecrets | None = None) -> LearnedSecrets:
    """Install one handler on the root logger. It masks `secrets` and whatever is added to
    `learned` later (the wiring hands the same registry to the cloud clients); the registry
    in use is returned."""
    redacting = RedactingFilter(secrets, learned)
    handler = logging.StreamHandler()
    handler.addFilter(JobContextFilter())
    handler.addFilter(redacting)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # One line per cloud request is debug detail; our client logs request ids itself.
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))
    return redacting.learned
