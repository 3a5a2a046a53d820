"""`/image schedule ... --native`: Rackspace Scheduled Images, the cloud's own schedule.

The service (rackerlabs/docs-cloud-servers ext-scheduled-images.rst and
post-enable-scheduled-images-servers-server-id-rax-si-scheduled-image.rst) knows only: daily,
or weekly on one day, and a retention count, per server. What a user asks for beyond that is
refused here, plainly and before anything is written, so nothing is half done.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

from commands.errors import ParseError
from commands.requests import NativeSchedule, NativeScheduleOff, Request, Schedule, ScheduleOff
from commands.text import Token

NATIVE = "--native"
NO_TIME = ("Rackspace Scheduled Images have no time of day: the cloud picks the hour. Drop "
           "`{what}`, or leave out --native to have me image the server at the time you want.")
_PATTERN = re.compile(r"[*?\[\]]")


class _Args(Protocol):
    @property
    def positionals(self) -> list[Token]: ...

    @property
    def options(self) -> dict[str, str | bool]: ...


class _Spec(Protocol):
    def fail(self, message: str) -> ParseError: ...


def is_native(args: _Args) -> bool:
    """Whether `--native` was given."""
    return bool(args.options.get(NATIVE, False))


def refuse_limits(spec: _Spec, args: _Args) -> None:
    """Raise a ParseError naming what Rackspace Scheduled Images cannot do, if it was asked."""
    words = [t.text.lower() for t in args.positionals]
    if "at" in words[1:]:
        raise spec.fail(NO_TIME.format(what="at HH:MM"))
    if "--tz" in args.options:
        raise spec.fail(NO_TIME.format(what="--tz"))
    if "--keep-days" in args.options:
        raise spec.fail("Rackspace Scheduled Images keep a number of images (--keep N), not "
                        "images younger than some days: drop --keep-days with --native.")
    if "--verify" in args.options:
        raise spec.fail("I cannot restore-test images that Rackspace Scheduled Images make "
                        "(the cloud makes them, not me): drop --verify with --native, or use "
                        "`/image verify <image>` on one of them.")
    target = args.positionals[0].text if args.positionals else ""
    if _PATTERN.search(target) or target.lower().startswith("meta:"):
        shown = target[:40].replace("`", "'")
        raise spec.fail("Rackspace Scheduled Images are set per server: name one server "
                        f"instead of `{shown}` with --native.")


def build(spec: _Spec, args: _Args, plain: Callable[[_Spec, _Args], Request]) -> Request:
    """The native request for `args`: the limits refused first, then the words read as for
    the bot's own schedules (`plain`, given the args without --native)."""
    refuse_limits(spec, args)
    rest = type(args)(args.positionals,  # type: ignore[call-arg]
                      {k: v for k, v in args.options.items() if k != NATIVE})
    request = plain(spec, rest)
    if isinstance(request, ScheduleOff):
        return NativeScheduleOff(server=request.server)
    if isinstance(request, Schedule):
        return NativeSchedule(server=request.server, frequency=request.frequency,
                              day=request.day, keep=request.keep)
    raise spec.fail("With --native I can only set (`daily`, `weekly <day>`) or turn `off` "
                    "the cloud's Rackspace Scheduled Images.")
