"""The sandbox's verbs of the `imagebot` command: `imagebot sandbox` and `imagebot cloud-sim`.

`bot/cli.py` must not import `sandbox/` (the bot ships without its simulator), so these verbs
reach it as `imagebot.verbs` entry points registered in pyproject.toml: each is a function that
adds its subparser to the `imagebot` parser. The subsystems are imported inside each handler so
`imagebot --help` stays fast.
"""

from __future__ import annotations

import argparse

from bot.cli import Subcommands


def add_cloud_sim(sub: Subcommands) -> None:
    """`imagebot cloud-sim`: serve the simulated OpenStack/Rackspace cloud."""
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


def add_sandbox(sub: Subcommands) -> None:
    """`imagebot sandbox`: the whole system on this machine, with a console and a web view."""
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


def _sandbox(args: argparse.Namespace) -> int:
    from sandbox.console.run import Options, run_sandbox

    return run_sandbox(Options(speed=args.speed, script=args.script, web_port=args.web_port,
                               no_web=args.no_web, servers=args.servers, timeout=args.timeout,
                               slack_rate=args.slack_rate))


def _cloud_sim(args: argparse.Namespace) -> int:
    from sandbox.cloud.serve import serve

    return serve(host=args.host, port=args.port, speed=args.speed, servers=args.servers,
                 api=args.api)
