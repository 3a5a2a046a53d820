"""The `imagebot` command line: one entry point, subcommands wired lazily.

Subsystems are imported inside each handler so `imagebot --help` stays fast and a broken
optional piece does not take the whole CLI down. Verbs of other installed packages (the
sandbox's `sandbox` and `cloud-sim`) arrive as `imagebot.verbs` entry points, so `bot/` never
imports `sandbox/`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import TypeAlias

from bot import __version__
from bot.config import ENVIRONMENT
from bot.errors import ImagebotError

VERBS_GROUP = "imagebot.verbs"
# What `add_subparsers()` returns, and an entry point's function that adds one verb to it.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
AddVerb: TypeAlias = Callable[[Subcommands], None]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="imagebot",
        description="Slack chat-ops bot that creates and schedules server images.",
    )
    parser.add_argument("--version", action="version", version=f"imagebot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    cloud = sub.add_parser("cloud", help="cloud connectivity tools")
    cloud.set_defaults(usage_of=cloud)  # `imagebot cloud` alone: its help, exit 2
    cloud_sub = cloud.add_subparsers(dest="cloud_command", metavar="ACTION")
    check = cloud_sub.add_parser("check", help="authenticate and list up to 20 servers")
    check.add_argument("--cloud", default=None, help="clouds.yaml entry (default: OS_CLOUD)")
    check.set_defaults(handler=_cloud_check)
    show = cloud_sub.add_parser("show", help="print the resolved cloud configuration "
                                "(secrets masked)")
    show.add_argument("--cloud", default=None, help="clouds.yaml entry (default: OS_CLOUD)")
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.set_defaults(handler=_cloud_show)

    run = sub.add_parser("run", help="run the bot (Socket Mode, or HTTP with --http)",
                         description=RUN_DESCRIPTION, epilog=environment_help(),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--http", action="store_true",
                     help="serve Slack's requests over HTTP (needs SLACK_SIGNING_SECRET) instead "
                     "of Socket Mode (needs SLACK_APP_TOKEN)")
    run.add_argument("--host", default="127.0.0.1",
                     help="--http: the address to listen on (default 127.0.0.1; put a TLS "
                     "proxy in front)")
    run.add_argument("--port", type=int, default=3000,
                     help="--http: the port to listen on (default 3000)")
    run.add_argument("--cloud", default=None, help="clouds.yaml entry (default: OS_CLOUD)")
    run.set_defaults(handler=_run)

    add_plugin_verbs(sub)
    return parser


RUN_DESCRIPTION = """\
Run the bot until stopped (Ctrl-C or SIGTERM).

Two ways to hear from Slack; pick one:
  Socket Mode (default)  the bot connects out to Slack: no public URL needed.
                         Needs SLACK_APP_TOKEN (xapp-..., an app-level token with the
                         connections:write scope: api.slack.com/apps -> your app -> Basic
                         Information -> App-Level Tokens).
  HTTP (--http)          Slack POSTs to https://<your host>/slack/events: needs
                         SLACK_SIGNING_SECRET and a public HTTPS proxy in front
                         (see manifest.yml for the lines to change)."""


def environment_help() -> str:
    """Every environment variable the service reads, one line each (`bot.config.ENVIRONMENT`)."""
    width = max(len(name) for name, _ in ENVIRONMENT)
    lines = [f"  {name:<{width}}  {line}" for name, line in ENVIRONMENT]
    return "environment variables:\n" + "\n".join(lines)


def add_plugin_verbs(sub: Subcommands) -> None:
    """Add the verbs registered under the `imagebot.verbs` entry-point group, by name.

    Each entry point names a function that adds its subparser. One that cannot be loaded (its
    package is broken or half-installed) is reported on stderr and left out: the bot's own
    verbs still work."""
    for point in sorted(entry_points(group=VERBS_GROUP), key=lambda p: p.name):
        try:
            add: AddVerb = point.load()
        except (ImportError, AttributeError) as exc:  # no such module, or no such function
            print(f"imagebot: verb {point.name!r} ({point.value}) not loaded: {exc}",
                  file=sys.stderr)
            continue
        add(sub)


def _run(args: argparse.Namespace) -> int:
    from bot.serve import run

    return run(http=args.http, host=args.host, port=args.port, cloud=args.cloud)


def _cloud_check(args: argparse.Namespace) -> int:
    from bot.cloud.check import check

    return check(cloud_name=args.cloud)


def _cloud_show(args: argparse.Namespace) -> int:
    from bot.cloud.show import show

    return show(cloud_name=args.cloud, as_json=args.json)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:  # no verb (or `cloud` without an action): a usage error, as argparse's
        getattr(args, "usage_of", parser).print_help(sys.stderr)
        return 2
    try:
        return int(handler(args) or 0)
    except ImagebotError as exc:
        print(f"imagebot: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
