"""`imagebot cloud check`: resolve the cloud like `cloud show`, authenticate, say which endpoints
were chosen (and how), list a few servers."""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

import httpx

from bot.cloud.client import CloudClient
from bot.cloud.config import CloudConfig, load_cloud_config
from bot.errors import CloudError, ConfigError

MAX_SERVERS = 20


async def run_check(config: CloudConfig, out: TextIO, *,
                    transport: httpx.AsyncBaseTransport | None = None) -> None:
    """Print the endpoints in use and up to MAX_SERVERS servers with their task state."""
    async with CloudClient(config, transport=transport) as client:
        compute, image = await client.endpoints()
        print(f"cloud:   {config.name} ({config.auth_type}, from {config.source})", file=out)
        how = (f"interface {config.interface}, region {config.region_name or 'any'}")
        print(f"compute: {compute} ("
              + ("compute_endpoint_override" if config.compute_endpoint_override
                 else f"catalog, {how}") + ")", file=out)
        print(f"image:   {image} ("
              + ("image_endpoint_override" if config.image_endpoint_override
                 else f"catalog, {how}") + ")", file=out)
        servers = await client.list_servers(limit=MAX_SERVERS)
        print(f"servers: {len(servers)}" + (" (first 20)" if len(servers) == MAX_SERVERS
                                            else ""), file=out)
        for s in servers:
            task = s.task_state or "-"
            extra = " volume-backed" if s.volume_backed else ""
            print(f"  {s.id}  {s.name:<24} {s.status:<8} task={task}{extra}", file=out)


def check(cloud_name: str | None, *, config: CloudConfig | None = None,
          transport: httpx.AsyncBaseTransport | None = None,
          out: TextIO | None = None, err: TextIO | None = None) -> int:
    """CLI entry: 0 when the cloud answered, else one line on stderr and 1."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        config = config or load_cloud_config(cloud_name)
        asyncio.run(run_check(config, out, transport=transport))
    except (ConfigError, CloudError) as exc:
        print(f"imagebot: cloud check failed: {exc}", file=err)
        return 1
    return 0
