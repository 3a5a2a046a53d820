"""Run the simulated cloud: from the CLI (`imagebot cloud-sim`), in-process, or in a thread.

- `serve(host, port, speed, servers)` blocks until SIGINT/SIGTERM (the CLI entry).
- `async with running_cloud(world) as base_url:` serves on the current event loop (tests).
- `with cloud_in_thread(world) as base_url:` serves from a background thread, for synchronous
  clients such as openstacksdk.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TextIO

import uvicorn

from sandbox.cloud.app import create_app
from sandbox.cloud.model import (
    DEMO_DOMAIN,
    DEMO_PASSWORD,
    DEMO_PROJECT,
    DEMO_USER,
    RAX_API_KEY,
    RAX_REGION,
    RAX_USER,
    REGION,
    World,
)
from sandbox.net import bind, serving, url_of


def clouds_yaml(url: str, name: str = "sandbox", api: str = "openstack") -> str:
    """A clouds.yaml block for the simulator: password auth through `/identity/v3`, or for
    `api="rackspace-legacy"` a Rackspace API key through `/identity/v2.0` (the keys of
    openstacksdk's rackspace profile and the rackspaceauth plugin: `auth_type:
    rackspace_apikey`, `auth.api_key`)."""
    if api == "rackspace-legacy":
        return (
            "clouds:\n"
            f"  {name}:\n"
            "    auth_type: rackspace_apikey\n"
            "    auth:\n"
            f"      auth_url: {url}/identity/v2.0\n"
            f"      username: {RAX_USER}\n"
            f"      api_key: {RAX_API_KEY}\n"
            f"    region_name: {RAX_REGION}\n"
            "    interface: public\n"
            "    identity_api_version: 2\n"
            "    compute_service_name: cloudServersOpenStack\n"
            "    image_service_name: cloudImages\n"
        )
    return (
        "clouds:\n"
        f"  {name}:\n"
        "    auth:\n"
        f"      auth_url: {url}/identity/v3\n"
        f"      username: {DEMO_USER}\n"
        f"      password: {DEMO_PASSWORD}\n"
        f"      project_name: {DEMO_PROJECT}\n"
        f"      user_domain_name: {DEMO_DOMAIN}\n"
        f"      project_domain_name: {DEMO_DOMAIN}\n"
        f"    region_name: {REGION}\n"
        "    interface: public\n"
        "    identity_api_version: 3\n"
    )


def _config(world: World, log_level: str = "warning") -> uvicorn.Config:
    return uvicorn.Config(create_app(world), log_level=log_level, lifespan="off",
                          access_log=False)


def serve(host: str, port: int, speed: float, servers: int, *,
          out: TextIO | None = None, api: str = "openstack") -> int:
    """Serve a fresh default world until SIGINT/SIGTERM; prints the URL and a clouds.yaml."""
    out = out or sys.stdout
    if speed <= 0:
        print("cloud-sim: --speed must be positive", file=sys.stderr)
        return 2
    if servers < 0:
        print("cloud-sim: --servers must be >= 0", file=sys.stderr)
        return 2
    world = World(clock=time.time, speed=speed, extra_servers=servers, api=api)
    try:
        sock = bind(host, port)
    except OSError as exc:
        print(f"cloud-sim: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    url = url_of(sock)
    print(f"cloud-sim listening on {url}", file=out)
    print(f"api {api}, speed x{speed:g}, {len(world.servers)} servers; clouds.yaml:\n",
          file=out)
    print(clouds_yaml(url, api=api), file=out)
    out.flush()
    server = uvicorn.Server(_config(world))
    # uvicorn re-raises the signal that stopped it once it has shut down; a no-op SIGTERM
    # handler turns that into a clean exit (SIGINT still ends as KeyboardInterrupt -> 130).
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
    return 0


@asynccontextmanager
async def running_cloud(world: World, *, host: str = "127.0.0.1",
                        port: int = 0) -> AsyncIterator[str]:
    """Serve `world` on this event loop for the duration of the block; yields the base URL."""
    sock = bind(host, port)
    async with serving(create_app(world), sock, name="cloud-sim"):
        yield url_of(sock)


@contextmanager
def cloud_in_thread(world: World, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `world` from a background thread (for synchronous clients); yields the base URL."""
    sock = bind(host, port)
    server = uvicorn.Server(_config(world))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="cloud-sim", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("cloud-sim did not start")
        time.sleep(0.005)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
