"""One cloud client per clouds.yaml entry that a channel policy names, plus the default."""

from __future__ import annotations

from collections.abc import Callable

from bot.cloud.client import CloudClient
from bot.errors import ConfigError


class CloudPool:
    """`get(None)` is the bot's default cloud; `get("name")` the clouds.yaml entry `name`,
    built on first use. The default cloud's own name maps to the default client."""

    def __init__(self, default: CloudClient, factory: Callable[[str], CloudClient] | None = None,
                 default_name: str | None = None) -> None:
        self.default = default
        self.default_name = default_name
        self.factory = factory
        self._clients: dict[str, CloudClient] = {}

    def get(self, name: str | None) -> CloudClient:
        """The client for cloud `name` (None: the default). ConfigError for an unknown name."""
        if not name or name == self.default_name:
            return self.default
        client = self._clients.get(name)
        if client is None:
            if self.factory is None:
                raise ConfigError(f"no cloud named {name!r} is configured", key="cloud")
            client = self._clients[name] = self.factory(name)
        return client

    @classmethod
    def of(cls, cloud: CloudClient | CloudPool) -> CloudPool:
        """A pool from a pool or a single client (tests and one-cloud set-ups)."""
        return cloud if isinstance(cloud, CloudPool) else cls(cloud)

    async def aclose(self) -> None:
        """Close every client."""
        for client in (self.default, *self._clients.values()):
            await client.aclose()
