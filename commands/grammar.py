"""The one command table and the parser built on it.

Each `Spec` holds a command's usage forms, options, help prose, examples and the function that
turns its words into a request. Help text and the README reference are generated from `TABLE`.
"""

from __future__ import annotations

import difflib
import functools
import re
import zoneinfo
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import time
from typing import cast

from commands import native
from commands.errors import ParseError
from commands.ids import JOB, MAX_KEEP, REQUEST, WEEKDAYS, job_id, looks_like, request_id
from commands.requests import (
    DEFAULT_AT,
    DEFAULT_KEEP,
    DEFAULT_LIMIT,
    DEFAULT_TZ,
    OPERATIONS,
    Approvals,
    Approve,
    Cancel,
    Create,
    Frequency,
    Help,
    Images,
    JobState,
    ListJobs,
    Protect,
    Reject,
    Request,
    Schedule,
    ScheduleOff,
    ScheduleOperation,
    Schedules,
    ServerRef,
    Status,
    Unprotect,
    Verify,
)
from commands.targets import BadTarget, FleetTarget, is_fleet_word, parse_target
from commands.text import (
    MAX_LENGTH,
    Token,
    UnbalancedQuote,
    bad_character,
    has_control,
    normalise,
    option_word,
    tokenize,
)

PREFIX = "/image"
MAX_SERVER_NAME = 255
MAX_IMAGE_NAME_BYTES = 255
MAX_NOTE = 255  # notes travel as image metadata, whose values Glance caps at 255 characters
MAX_LIMIT = 100
STATES: tuple[JobState, ...] = ("running", "done", "failed", "cancelled")
_STATE_CHOICE = "|".join(STATES)

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                   re.IGNORECASE | re.ASCII)
_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})", re.ASCII)
_AMPM = re.compile(r"([0-9]{1,2})(?::([0-9]{2}))?\s*([ap])\.?m\.?", re.IGNORECASE | re.ASCII)
_ZONE_CHARS = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*", re.ASCII)
_DAY_FORMS = {form: day for day in WEEKDAYS for form in (day.lower(), day[:3].lower())}


@dataclass(frozen=True)
class Option:
    """One `--option`; `metavar` None means a switch that takes no value."""

    flag: str
    metavar: str | None
    help: str


@dataclass(frozen=True)
class Args:
    """A command's words after splitting off its options (values are still raw text)."""

    positionals: list[Token]
    options: dict[str, str | bool]

    def value(self, flag: str) -> str | None:
        """The raw value given for a valued option, or None when it was not given."""
        got = self.options.get(flag)
        return got if isinstance(got, str) else None


@dataclass(frozen=True)
class Spec:
    """One command: its grammar, its help and its builder."""

    name: str
    forms: tuple[str, ...]  # argument synopses, one per usage form
    summary: str  # what the command does; a single form's line in the overview
    details: str
    examples: tuple[str, ...]  # full command texts, without the /image prefix
    # Either `build` (from split words and options) or `raw` (from the verbatim rest of the text).
    build: Callable[[Spec, Args], Request] | None = None
    raw: Callable[[Spec, str], Request] | None = None
    options: tuple[Option, ...] = ()
    # What each form does, in the order of `forms` (for commands whose forms differ).
    form_summaries: tuple[str, ...] = ()

    @property
    def described_forms(self) -> tuple[tuple[str, str], ...]:
        """(usage line, what that form does) for each form: `form_summaries` when given, else
        the command's summary on every line."""
        if self.form_summaries:
            assert len(self.form_summaries) == len(self.forms), self.name
            return tuple(zip(self.usage_lines, self.form_summaries, strict=True))
        return tuple((line, self.summary) for line in self.usage_lines)

    @property
    def usage_lines(self) -> tuple[str, ...]:
        """Each usage form as a full `/image ...` line."""
        return tuple(f"{PREFIX} {self.name} {form}".rstrip() for form in self.forms)

    @property
    def usage(self) -> str:
        """The usage forms, one per line (what `ParseError.usage` holds)."""
        return "\n".join(self.usage_lines)

    def fail(self, message: str) -> ParseError:
        """A ParseError for this command (raise it)."""
        return ParseError(message, self.usage)

    def parse_rest(self, rest: str) -> Request:
        """Parse the text after the command word."""
        if self.raw is not None:
            return self.raw(self, rest)
        assert self.build is not None, self.name
        try:
            tokens = tokenize(rest)
        except UnbalancedQuote as exc:
            raise self.fail(f"A quote is not closed: {show(exc.fragment)}. Close it, or "
                            "remove it.") from None
        try:
            args = split_options(self, tokens)
        except _HelpWanted:
            return Help(topic=self.name)
        return self.build(self, args)


class _HelpWanted(Exception):
    """`--help` / `-h` appeared among a command's words."""


# --- small helpers ---------------------------------------------------------------------------


def show(text: str, limit: int = 40) -> str:
    """Echo user text safely inside a Slack message: short, code-formatted, no live markup."""
    if len(text) > limit:
        text = text[:limit] + "…"
    text = text.replace("`", "'").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"`{text}`"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean `x`?)` for close matches of `word`, else an empty string."""
    if len(word) > 64:  # nothing close to a command word is that long
        return ""
    matches = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    if not matches:
        return ""
    return " (did you mean " + " or ".join(f"`{m}`" for m in matches) + "?)"


def server_ref(spec: Spec, text: str) -> ServerRef:
    """A server name or UUID, validated; job and request ids are refused with a pointer."""
    if _UUID.fullmatch(text):
        return ServerRef(text.lower(), True)
    if not text:
        raise spec.fail("The server name is empty.")
    if looks_like(JOB, text):
        raise spec.fail(f"{show(text)} is a job id, not a server; try `{PREFIX} status {text}`. "
                        "(A server with such a name can be given by its UUID.)")
    if looks_like(REQUEST, text):
        raise spec.fail(f"{show(text)} is a change-request id, not a server; see "
                        f"`{PREFIX} approvals`. (A server with such a name can be given by "
                        "its UUID.)")
    if len(text) > MAX_SERVER_NAME:
        raise spec.fail(f"That server name is {len(text)} characters long; "
                        f"the limit is {MAX_SERVER_NAME}.")
    if has_control(text) or any(char.isspace() for char in text):
        raise spec.fail(f"Server names cannot contain spaces or control characters: {show(text)}.")
    return ServerRef(text, False)


def image_name(spec: Spec, text: str) -> str:
    """An image name: non-empty, at most 255 bytes of UTF-8, no control characters."""
    if not text.strip():
        raise spec.fail("The image name (--name) is empty.")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_IMAGE_NAME_BYTES:
        raise spec.fail(f"The image name is {size} bytes long; the limit is "
                        f"{MAX_IMAGE_NAME_BYTES} bytes (UTF-8).")
    if has_control(text):
        raise spec.fail("The image name cannot contain control characters (tabs, newlines, …).")
    return text


def note_text(spec: Spec, text: str) -> str:
    """A note: non-empty, at most 255 characters, no control characters."""
    if not text.strip():
        raise spec.fail("The note (--note) is empty.")
    if len(text) > MAX_NOTE:
        raise spec.fail(f"The note is {len(text)} characters long; the limit is {MAX_NOTE}.")
    if has_control(text):
        raise spec.fail("The note cannot contain control characters (tabs, newlines, …).")
    return text


def bounded_int(spec: Spec, flag: str, text: str, low: int, high: int) -> int:
    """A decimal integer in [low, high] (ASCII digits only)."""
    if not re.fullmatch(r"[+-]?[0-9]+", text, re.ASCII):
        raise spec.fail(f"{flag} must be a whole number from {low} to {high}, not {show(text)}.")
    digits = text.lstrip("+-").lstrip("0") or "0"
    if len(digits) > 12 or not low <= int(text) <= high:
        raise spec.fail(f"{flag} must be from {low} to {high}, not {show(text)}.")
    return int(text)


def time_of_day(spec: Spec, text: str) -> time:
    """A 24-hour `HH:MM` or `H:MM` wall time from 00:00 to 23:59."""
    match = _TIME.fullmatch(text)
    if match is None:
        ampm = _AMPM.fullmatch(text)
        if ampm is not None:
            hour, minute = int(ampm.group(1)), int(ampm.group(2) or 0)
            if 1 <= hour <= 12 and minute <= 59:
                hour = hour % 12 + (12 if ampm.group(3).lower() == "p" else 0)
                raise spec.fail(f"Times are 24-hour: write `at {hour:02d}:{minute:02d}` "
                                f"instead of {show(text)}.")
        raise spec.fail(f"{show(text)} is not a time; use 24-hour HH:MM such as `at 02:30`.")
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour == 24 and minute == 0:
        raise spec.fail("24:00 is not a time of day; use `at 00:00` for midnight.")
    if hour > 23 or minute > 59:
        raise spec.fail(f"{show(text)} is out of range; times run from 00:00 to 23:59.")
    return time(hour, minute)


def weekday(spec: Spec, text: str) -> str:
    """`SATURDAY` from `sat`, `Sat`, `saturday`, `SATURDAY`, ..."""
    day = _DAY_FORMS.get(text.lower())
    if day is None:
        raise spec.fail(f"{show(text)} is not a day of the week"
                        f"{did_you_mean(text.lower(), _DAY_FORMS)}; use e.g. `sat` or "
                        "`saturday`.")
    return day


@functools.lru_cache(maxsize=1)
def _zones_by_lower_name() -> dict[str, str]:
    try:
        return {name.lower(): name for name in zoneinfo.available_timezones()}
    except Exception:  # a broken tz database must not break parsing
        return {}


def _zone_exists(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError, OSError, UnicodeError, ...
        return False
    return True


def time_zone(spec: Spec, text: str) -> str:
    """A valid IANA zone name (case-insensitively matched to its canonical spelling)."""
    if not text.strip():
        raise spec.fail("--tz needs a time zone name, such as `--tz Europe/Berlin` or "
                        "`--tz UTC`; it was empty.")
    if len(text) <= 64 and _ZONE_CHARS.fullmatch(text) and ".." not in text:
        if _zone_exists(text):
            return text
        canonical = _zones_by_lower_name().get(text.lower())
        if canonical is not None and _zone_exists(canonical):
            return canonical
    hint = did_you_mean(text, _zones_by_lower_name().values())
    raise spec.fail(f"{show(text)} is not a time zone I know{hint}; use an IANA name such as "
                    "`Europe/Berlin` or `UTC`.")


def no_extra(spec: Spec, extra: Sequence[Token]) -> None:
    """Refuse leftover words, suggesting the option a bare word probably meant."""
    if not extra:
        return
    word = extra[0].text
    flags = [opt.flag for opt in spec.options]
    hint = did_you_mean("--" + word.lower(), flags) if word and not extra[0].quoted else ""
    if hint:
        raise spec.fail(f"Unexpected argument {show(word)}{hint}.")
    raise spec.fail(f"Unexpected argument {show(word)}; `{spec.name}` takes no more words "
                    "here (quote a value that has spaces).")


def split_options(spec: Spec, tokens: Sequence[Token]) -> Args:
    """Separate options (any order, `--opt value` or `--opt=value`) from positional words."""
    known = {opt.flag: opt for opt in spec.options}
    positionals: list[Token] = []
    options: dict[str, str | bool] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        word = option_word(token)
        if word is None:
            positionals.append(token)
            continue
        flag, eq, value = word.partition("=")
        flag = flag.lower()
        if flag in ("--help", "-h"):
            raise _HelpWanted
        option = known.get(flag)
        if option is None:
            hint = did_you_mean(flag, known)
            if not hint:
                hint = (" (" + spec.name + " takes " + ", ".join(f"`{f}`" for f in known) + ")"
                        if known else f" (`{spec.name}` takes no options)")
            raise spec.fail(f"Unknown option {show(flag)}{hint}.")
        if flag in options:
            raise spec.fail(f"{flag} is given twice; give it once.")
        if option.metavar is None:
            if eq:
                raise spec.fail(f"{flag} is a switch and takes no value.")
            options[flag] = True
            continue
        if not eq:
            if i >= len(tokens) or option_word(tokens[i]) is not None:
                raise spec.fail(f"{flag} needs a value ({flag} {option.metavar}).")
            value = tokens[i].text
            i += 1
        options[flag] = value
    return Args(positionals, options)


# --- builders --------------------------------------------------------------------------------


def _server_first(spec: Spec, args: Args) -> ServerRef:
    if not args.positionals:
        raise spec.fail(f"`{spec.name}` needs a server name or UUID.")
    return server_ref(spec, args.positionals[0].text)


def _build_create(spec: Spec, args: Args) -> Request:
    server = _server_first(spec, args)
    no_extra(spec, args.positionals[1:])
    name = args.value("--name")
    note = args.value("--note")
    return Create(server=server,
                  image_name=image_name(spec, name) if name is not None else None,
                  now=bool(args.options.get("--now", False)),
                  note=note_text(spec, note) if note is not None else None,
                  verify=bool(args.options.get("--verify", False)))


def _all(args: Args) -> bool:
    return bool(args.options.get("--all", False))


def _build_status(spec: Spec, args: Args) -> Request:
    if not args.positionals:
        return Status(all=_all(args))
    no_extra(spec, args.positionals[1:])
    text = args.positionals[0].text
    job = job_id(text)
    if job is not None:
        return Status(job_id=job, all=_all(args))
    if request_id(text) is not None:
        raise spec.fail(f"{show(text)} is a change request; see `{PREFIX} approvals`.")
    return Status(server=server_ref(spec, text), all=_all(args))


def _build_list(spec: Spec, args: Args) -> Request:
    server = server_ref(spec, args.positionals[0].text) if args.positionals else None
    no_extra(spec, args.positionals[1:])
    state: JobState | None = None
    raw_state = args.value("--state")
    if raw_state is not None:
        lowered = raw_state.lower()
        if lowered not in STATES:
            raise spec.fail(f"--state must be running, done, failed or cancelled, not "
                            f"{show(raw_state)}"
                            f"{did_you_mean(lowered, STATES)}.")
        state = cast(JobState, lowered)
    raw_limit = args.value("--limit")
    limit = (bounded_int(spec, "--limit", raw_limit, 1, MAX_LIMIT)
             if raw_limit is not None else DEFAULT_LIMIT)
    return ListJobs(server=server, state=state, limit=limit, all=_all(args))


def _build_cancel(spec: Spec, args: Args) -> Request:
    if not args.positionals:
        raise spec.fail("`cancel` needs a job id such as J17 (see `/image list`).")
    no_extra(spec, args.positionals[1:])
    text = args.positionals[0].text
    job = job_id(text)
    if job is None:
        raise spec.fail(f"{show(text)} is not a job id; job ids look like J17 "
                        f"(see `{PREFIX} list`).")
    return Cancel(job_id=job)


def _build_images(spec: Spec, args: Args) -> Request:
    server = _server_first(spec, args)
    no_extra(spec, args.positionals[1:])
    return Images(server=server)


_MODES = ("daily", "weekly", "off", *OPERATIONS)


MAX_KEEP_DAYS = 3650


def _schedule_target(spec: Spec, args: Args) -> tuple[ServerRef, FleetTarget | None]:
    """A schedule's first word: a server, or a fleet (`web-*`, `meta:role=web`)."""
    if not args.positionals:
        raise spec.fail("`schedule` needs a server, a pattern such as `web-*` or a metadata "
                        "match such as `meta:role=web`.")
    word = args.positionals[0].text
    if not is_fleet_word(word):
        return server_ref(spec, word), None
    if len(word) > MAX_SERVER_NAME or has_control(word) or any(c.isspace() for c in word):
        raise spec.fail(f"{show(word)} is not a target: at most {MAX_SERVER_NAME} characters, "
                        "no spaces or control characters.")
    try:
        target = parse_target(word)
    except BadTarget as exc:
        raise spec.fail(str(exc)) from None
    return ServerRef(target.text, False), target


def _retention(spec: Spec, args: Args) -> tuple[int, int | None]:
    """(keep, keep_days): the default count when neither is given; `--keep-days` alone keeps
    any number of images younger than D days (the count is then the largest there is)."""
    raw_keep, raw_days = args.value("--keep"), args.value("--keep-days")
    days = (bounded_int(spec, "--keep-days", raw_days, 1, MAX_KEEP_DAYS)
            if raw_days is not None else None)
    if raw_keep is not None:
        return bounded_int(spec, "--keep", raw_keep, 1, MAX_KEEP), days
    return (DEFAULT_KEEP if days is None else MAX_KEEP), days


def _build_schedule(spec: Spec, args: Args) -> Request:
    if native.is_native(args):  # Rackspace Scheduled Images: commands/native.py
        return native.build(spec, args, _build_schedule)  # type: ignore[arg-type]
    server, target = _schedule_target(spec, args)
    rest = args.positionals[1:]
    if not rest:
        raise spec.fail("Say how often: `daily`, `weekly <day>`, or `off` to remove the "
                        "schedule.")
    mode = rest[0].text.lower()
    if mode not in _MODES:
        raise spec.fail(f"{show(rest[0].text)} is not daily, weekly or off, nor pause, "
                        f"resume, run-now or skip-next{did_you_mean(mode, _MODES)}.")
    rest = rest[1:]
    if mode in OPERATIONS:  # on a server's schedule, or a fleet's (`target`)
        return _schedule_operation(spec, server, mode, rest, args, target)
    if mode == "off":
        no_extra(spec, rest)
        if args.options:
            raise spec.fail("`schedule <server> off` takes no options.")
        return ScheduleOff(server=server, target=target)
    frequency: Frequency = "weekly" if mode == "weekly" else "daily"
    day: str | None = None
    if frequency == "weekly":
        if not rest or rest[0].text.lower() == "at" or _TIME.fullmatch(rest[0].text):
            raise spec.fail("A weekly schedule needs a day, e.g. `weekly sat`.")
        day = weekday(spec, rest[0].text)
        rest = rest[1:]
    elif rest and rest[0].text.lower() in _DAY_FORMS:
        raise spec.fail(f"A daily schedule takes no day; for one day a week write "
                        f"`weekly {rest[0].text.lower()}`.")
    at = DEFAULT_AT
    if rest and rest[0].text.lower() == "at":
        if len(rest) < 2:
            raise spec.fail("`at` needs a time such as 02:30 (24-hour HH:MM).")
        at = time_of_day(spec, rest[1].text)
        rest = rest[2:]
    elif rest and (_TIME.fullmatch(rest[0].text) or _AMPM.fullmatch(rest[0].text)):
        raise spec.fail(f"Put `at` before the time: `at {rest[0].text}`.")
    if rest and rest[0].text.lower() == "at":
        raise spec.fail("`at` is repeated; a schedule runs at one time of day, so give "
                        "`at HH:MM` once.")
    no_extra(spec, rest)
    keep, keep_days = _retention(spec, args)
    raw_tz = args.value("--tz")
    tz = time_zone(spec, raw_tz) if raw_tz is not None else DEFAULT_TZ
    return Schedule(server=server, frequency=frequency, day=day, at=at, keep=keep, tz=tz,
                    verify=bool(args.options.get("--verify", False)), target=target,
                    keep_days=keep_days)


def _schedule_operation(spec: Spec, server: ServerRef, mode: str, rest: Sequence[Token],
                        args: Args, target: FleetTarget | None = None) -> Request:
    """`schedule <server|target> pause|resume|run-now|skip-next`: no more words, no options."""
    no_extra(spec, list(rest))
    if args.options:
        raise spec.fail(f"`{mode}` takes no options (the schedule keeps its own).")
    operation = next(op for op in OPERATIONS if op == mode)
    return ScheduleOperation(server=server, operation=operation, target=target)


def _image_first(spec: Spec, args: Args) -> str:
    """The image a command is about: a name (quoted if it has spaces) or an id."""
    if not args.positionals:
        raise spec.fail(f"`{spec.name}` needs an image name or id (see `{PREFIX} images "
                        "<server>`).")
    no_extra(spec, args.positionals[1:])
    text = args.positionals[0].text
    if not text.strip() or has_control(text) or \
            len(text.encode("utf-8", "surrogatepass")) > MAX_IMAGE_NAME_BYTES:
        raise spec.fail(f"{show(text)} is not an image name or id.")
    return text.strip()


def _build_verify(spec: Spec, args: Args) -> Request:
    image = _image_first(spec, args)
    marker = args.value("--console")
    if marker is not None and (not marker.strip() or has_control(marker)
                               or len(marker) > MAX_NOTE):
        raise spec.fail(f"--console needs the text to wait for, at most {MAX_NOTE} "
                        "characters on one line (quote it if it has spaces).")
    return Verify(image=image, console=marker)


def _build_protect(spec: Spec, args: Args) -> Request:
    return Protect(image=_image_first(spec, args))


def _build_unprotect(spec: Spec, args: Args) -> Request:
    return Unprotect(image=_image_first(spec, args))


def _build_schedules(spec: Spec, args: Args) -> Request:
    server = server_ref(spec, args.positionals[0].text) if args.positionals else None
    no_extra(spec, args.positionals[1:])
    return Schedules(server=server, all=_all(args))


def _build_approvals(spec: Spec, args: Args) -> Request:
    no_extra(spec, args.positionals)
    return Approvals(all=_all(args))


def _request_id_of(spec: Spec, text: str | None) -> str:
    if not text:
        raise spec.fail(f"`{spec.name}` needs a change-request id such as R4 "
                        f"(see `{PREFIX} approvals`).")
    found = request_id(text)
    if found is None:
        raise spec.fail(f"{show(text)} is not a change-request id; they look like R4 "
                        f"(see `{PREFIX} approvals`).")
    return found


def _build_approve(spec: Spec, args: Args) -> Request:
    first = args.positionals[0].text if args.positionals else None
    found = _request_id_of(spec, first)
    no_extra(spec, args.positionals[1:])
    return Approve(request_id=found)


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1].strip()
    return text


def _raw_reject(spec: Spec, rest: str) -> Request:
    # The reason is free prose (apostrophes, dashes, "quotes"), so it is taken verbatim.
    words = rest.split(None, 1)
    first = words[0] if words else None
    if first is not None and first.lower() in ("--help", "-h"):
        return Help(topic=spec.name)
    found = _request_id_of(spec, first)
    reason = _unquote(words[1].strip()) if len(words) > 1 else ""
    return Reject(request_id=found, reason=reason or None)


def _build_help(spec: Spec, args: Args) -> Request:
    if not args.positionals:
        return Help()
    no_extra(spec, args.positionals[1:])
    topic = args.positionals[0].text.lower()
    if topic == PREFIX:  # `/image help /image`
        return Help()
    if topic not in BY_NAME:
        raise spec.fail(f"There is no command {show(topic)}"
                        f"{did_you_mean(topic, BY_NAME)}.")
    return Help(topic=topic)


# --- the table -------------------------------------------------------------------------------

_KEEP = Option("--keep", "N", f"How many scheduled images to keep, 1–{MAX_KEEP} "
               f"(default {DEFAULT_KEEP}); older ones are deleted.")
_KEEP_DAYS = Option("--keep-days", "D", "Also delete scheduled images older than D days "
                    "(with --keep: both apply; the newest good image always stays).")
_ALL = Option("--all", None, "Every channel, not only this one (for the admins the channel "
              "policy names).")
_VERIFY = Option("--verify", None, "Restore-test each new image: boot a throw-away server "
                 "from it, then delete it.")
_NATIVE = Option("--native", None, "Rackspace only: set the cloud's own Scheduled Images "
                 "instead (daily or weekly, --keep N; the cloud picks the hour).")
_TZ = Option("--tz", "ZONE", f"IANA time zone of the `at` time (default {DEFAULT_TZ}), "
             "e.g. Europe/Berlin.")

TABLE: tuple[Spec, ...] = (
    Spec(
        name="create",
        forms=("<server> [--name NAME] [--now] [--note TEXT] [--verify]",),
        summary="Make an image of a server now.",
        details=("Without --now I first ask you to confirm that the server's applications are "
                 "quiesced (databases flushed) and wait for your click. The server is a name or "
                 "a UUID."),
        options=(
            Option("--name", "NAME", "Image name (at most 255 bytes); default: server name "
                   "and time."),
            Option("--now", None, "Skip the quiesce confirmation and start at once."),
            Option("--note", "TEXT", "A note stored with the image (quote it if it has "
                   "spaces)."),
            _VERIFY,
        ),
        examples=("create web-1", "create web-1 --now", "create web-1 --now --verify",
                  'create db-2 --name db-2-pre-upgrade --note "before upgrade"'),
        build=_build_create,
    ),
    Spec(
        name="status",
        forms=("[<job-id> | <server>] [--all]",),
        summary="Show a job, the latest job of a server, or what is running.",
        details=("Job ids look like J17; anything else is taken as a server name or UUID. Only "
                 "this channel's jobs."),
        options=(_ALL,),
        examples=("status", "status J17", "status web-1", "status --all"),
        build=_build_status,
    ),
    Spec(
        name="list",
        forms=(f"[<server>] [--state {_STATE_CHOICE}] [--limit N] [--all]",),
        summary="List recent jobs.",
        details="This channel's jobs, newest first, optionally for one server and in one state.",
        options=(
            Option("--state", _STATE_CHOICE, "Only jobs in this state (done: the image is "
                   "ready; a cancelled job is not counted as failed)."),
            Option("--limit", "N", f"How many jobs to show, 1–{MAX_LIMIT} "
                   f"(default {DEFAULT_LIMIT})."),
            _ALL,
        ),
        examples=("list", "list web-1 --state failed", "list --limit 50", "list --all"),
        build=_build_list,
    ),
    Spec(
        name="cancel",
        forms=("<job-id>",),
        summary="Cancel a job that has not started imaging yet.",
        details="Once the cloud is taking the image it can no longer be stopped.",
        examples=("cancel J17",),
        build=_build_cancel,
    ),
    Spec(
        name="images",
        forms=("<server>",),
        summary="List the images of a server.",
        details="Shows every image of the server, marking the ones a schedule manages.",
        examples=("images web-1",),
        build=_build_images,
    ),
    Spec(
        name="verify",
        forms=('<image> [--console "TEXT"]',),
        summary="Restore-test an image: boot a throw-away server from it, then delete it.",
        details=("The image is a name or an id. I boot `imagebot-verify-…` with the smallest "
                 "flavor that fits the image, on the original server's network where known, "
                 "wait until it is ACTIVE (and, with --console, until TEXT shows in its "
                 "console log), delete it and say in the thread how it went. Only images of "
                 "servers this channel may touch."),
        options=(Option("--console", "TEXT", "Also wait for this text in the console log, "
                        'e.g. "login:".'),),
        examples=("verify web-1-20260101-020000", 'verify web-1-pre-upgrade --console "login:"'),
        build=_build_verify,
    ),
    Spec(
        name="protect",
        forms=("<image>",),
        summary="Protect an image: no one (retention, the bot, people) can delete it.",
        details=("Sets the image's `protected` flag in the cloud. The image is a name, an id, "
                 "or the job that made it (`J7`). Only images of servers this channel may "
                 "touch; answered to you alone."),
        examples=("protect web-1-pre-upgrade", "protect J7"),
        build=_build_protect,
    ),
    Spec(
        name="unprotect",
        forms=("<image>",),
        summary="Lift an image's protection, so it can be deleted again.",
        details="The reverse of `protect`; retention may then delete the image.",
        examples=("unprotect web-1-pre-upgrade",),
        build=_build_unprotect,
    ),
    Spec(
        name="schedule",
        forms=("<target> daily [at HH:MM] [--keep N] [--keep-days D] [--tz ZONE] [--verify]",
               "<target> weekly <day> [at HH:MM] [--keep N] [--keep-days D] [--tz ZONE] "
               "[--verify]",
               "<target> off",
               "<target> pause|resume|run-now|skip-next",
               "<server> (daily | weekly <day>) [--keep N] --native",
               "<server> off --native"),
        summary="Image a server or a fleet every day or every week, or stop doing so.",
        form_summaries=("Image a server or a fleet every day.",
                        "Image a server or a fleet once a week.",
                        "Stop imaging a server or a fleet on a schedule.",
                        "Pause or resume a schedule, run it once now, or skip its next slot.",
                        "Set Rackspace's own Scheduled Images of a server.",
                        "Turn off Rackspace's Scheduled Images of a server."),
        details=("The target is a server (name or UUID), a pattern over server names such as "
                 "`web-*`, or a metadata match such as `meta:role=web` (Nova server metadata); "
                 "a fleet is resolved again at each run and each run is one digest message. "
                 "Times are 24-hour wall times in the zone given by --tz (default "
                 f"{DEFAULT_TZ}, time 00:00). Days may be written `sat` or `saturday`. A new "
                 "schedule replaces the old one; `off` removes it. `pause` stops the runs "
                 "until `resume` (slots missed while paused are not caught up); `run-now` "
                 "takes one image now without moving the regular slots; `skip-next` skips "
                 "only the next slot; on a fleet they act on the fleet's schedule, and a "
                 "`run-now` is one run of every server it matches. Each is a change request, "
                 "like a new schedule: it may "
                 "need an approval. With --native (Rackspace clouds) the cloud's own "
                 "Scheduled Images are set instead: no time of day, retention by count only."),
        options=(_KEEP, _KEEP_DAYS, _TZ, _VERIFY, _NATIVE),
        examples=("schedule web-1 daily at 02:30 --tz Europe/Berlin",
                  "schedule db-2 weekly sat at 23:00 --keep 4",
                  "schedule web-* daily at 03:00 --keep 7 --keep-days 30",
                  "schedule meta:role=web weekly sun --keep-days 14", "schedule web-1 off",
                  "schedule web-1 pause", "schedule web-1 skip-next", "schedule web-* run-now",
                  "schedule web-1 weekly sat --keep 4 --native"),
        build=_build_schedule,
    ),
    Spec(
        name="schedules",
        forms=("[<server>] [--all]",),
        summary="List image schedules.",
        details=("This channel's schedules, or the one of a server, with the next run in "
                 "UTC; a fleet's with the servers its target matches now; on Rackspace also "
                 "the cloud's own Scheduled Images, read from the cloud."),
        options=(_ALL,),
        examples=("schedules", "schedules web-1", "schedules --all"),
        build=_build_schedules,
    ),
    Spec(
        name="approvals",
        forms=("[--all]",),
        summary="List change requests waiting for a decision.",
        details=("This channel's change requests (ids like R4); they are decided in the "
                 "channel where they were proposed."),
        options=(_ALL,),
        examples=("approvals", "approvals --all"),
        build=_build_approvals,
    ),
    Spec(
        name="approve",
        forms=("<request-id>",),
        summary="Approve a change request.",
        details="You cannot approve your own request.",
        examples=("approve R4",),
        build=_build_approve,
    ),
    Spec(
        name="reject",
        forms=("<request-id> [reason…]",),
        summary="Reject a change request, optionally saying why.",
        details="Everything after the id is the reason, taken as written.",
        examples=("reject R4", "reject R4 not during the release freeze"),
        raw=_raw_reject,
    ),
    Spec(
        name="help",
        forms=("[command]",),
        summary="Show all commands, or the details of one.",
        details=("`/image <command> --help` works too, and `/image --help` or `/image -h` "
                 "shows all commands."),
        examples=("help", "help schedule"),
        build=_build_help,
    ),
)

BY_NAME: dict[str, Spec] = {spec.name: spec for spec in TABLE}
OVERVIEW_USAGE = f"{PREFIX} <command> [arguments]"


# --- the parser ------------------------------------------------------------------------------


def parse(text: str) -> Request:
    """Turn the text of a `/image` command into a request, or raise `ParseError`.

    Empty text means `Help()`. Never raises anything but `ParseError`, whatever the input.
    """
    if not isinstance(text, str):
        raise ParseError("The command must be text.", OVERVIEW_USAGE)
    if len(text) > MAX_LENGTH:
        raise ParseError(f"That command is {len(text)} characters long; the limit is "
                         f"{MAX_LENGTH}.", OVERVIEW_USAGE)
    problem = bad_character(text)
    if problem is not None:
        raise ParseError(f"The command contains {problem}; please retype it.", OVERVIEW_USAGE)
    text = normalise(text).strip()
    if not text:
        return Help()
    if option_word(Token(text.lower())) in ("--help", "-h"):  # `/image --help` = `help`
        return Help()
    parts = text.split(None, 1)
    word, rest = parts[0], (parts[1] if len(parts) > 1 else "")
    spec = BY_NAME.get(word.lower())
    if spec is None:
        hint = did_you_mean(word.lower(), BY_NAME)
        raise ParseError(f"I don't know the command {show(word)}{hint}. Commands: "
                         + ", ".join(BY_NAME) + f"; `{PREFIX} help` explains them.",
                         OVERVIEW_USAGE)
    return spec.parse_rest(rest)
