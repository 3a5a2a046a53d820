"""The `imagebot` command line: one entry point, subcommands wired lazily.

Subsystems are imported inside each handler so `imagebot --help` stays fast and a broken
optional piece does not take the whole CLI down.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bot import __version__
from bot.errors import ImagebotError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="imagebot",
        description="Slack chat-ops bot that creates and schedules server images.",
    )
    parser.add_argument("--version", action="version", version=f"imagebot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sim = sub.add_parser("cloud-sim", help="serve the simulated OpenStack/Rackspace cloud")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8780, help="0 picks a free port")
    sim.add_argument("--speed", type=float, default=1.0, help="time runs X times faster")
    sim.add_argument("--servers", type=int, default=0, help="also seed N servers load-1..load-N")
    sim.add_argument("--api", choices=("openstack", "rackspace-legacy"), default="openstack",
                     help="the API shape to serve: OpenStack (Keystone v3, Nova 2.1-2.96, "
                          "current Glance) or Rackspace (identity v2.0 API keys, legacy Nova, "
                          "Rackspace Cloud Images, published rate limits)")
    sim.set_defaults(handler=_cloud_sim)

    cloud = sub.add_parser("cloud", help="cloud connectivity tools")
    cloud_sub = cloud.add_subparsers(dest="cloud_command", metavar="ACTION")
    check = cloud_sub.add_parser("check", help="authenticate and list up to 20 servers")
    check.add_argument("--cloud", default=None, help="clouds.yaml entry (default: OS_CLOUD)")
    check.set_defaults(handler=_cloud_check)
    show = cloud_sub.add_parser("show", help="print the resolved cloud configuration "
                                "(secrets masked)")
    show.add_argument("--cloud", default=None, help="clouds.yaml entry (default: OS_CLOUD)")
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.set_defaults(handler=_cloud_show)

    run = sub.add_parser("run", help="run the bot (Socket Mode if SLACK_APP_TOKEN is set)")
    run.add_argument("--http", action="store_true", help="serve HTTP instead of Socket Mode")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=3000)
    run.set_defaults(handler=_run)

    box = sub.add_parser("sandbox", help="the whole system on this machine: simulated cloud, "
                         "Slack emulator and the bot, with a console and a web view")
    box.add_argument("--speed", type=float, default=20.0,
                     help="simulated cloud time runs X times faster (default 20)")
    box.add_argument("--script", default=None, metavar="FILE",
                     help="run console lines from FILE ('-' for stdin) and exit")
    box.add_argument("--web-port", type=int, default=None, metavar="N",
                     help="web view port (default 8790 interactively, none for --script; "
                          "0 picks a free port)")
    box.add_argument("--no-web", action="store_true", help="do not serve the web view")
    box.add_argument("--servers", type=int, default=0, help="also seed N servers load-1..load-N")
    box.add_argument("--timeout", type=float, default=60.0, metavar="S",
                     help="with --script: fail when jobs still run S seconds after a line")
    box.add_argument("--slack-rate", type=float, default=1.0, metavar="X",
                     help="multiply Slack's rate limits (default 1: about 1 post/s per channel, "
                          "as in real Slack)")
    box.set_defaults(handler=_sandbox)

    return parser


def _sandbox(args: argparse.Namespace) -> int:
    from sandbox.console.run import Options, run_sandbox

    return run_sandbox(Options(speed=args.speed, script=args.script, web_port=args.web_port,
                               no_web=args.no_web, servers=args.servers, timeout=args.timeout,
                               slack_rate=args.slack_rate))


def _run(args: argparse.Namespace) -> int:
    from bot.serve import run

    return run(http=args.http, host=args.host, port=args.port)


def _cloud_sim(args: argparse.Namespace) -> int:
    from sandbox.cloud.serve import serve

    return serve(host=args.host, port=args.port, speed=args.speed, servers=args.servers,
                 api=args.api)


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
    if handler is None:
        parser.print_help()
        return 0
    try:
        return int(handler(args) or 0)
    except ImagebotError as exc:
        print(f"imagebot: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
