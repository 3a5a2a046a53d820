"""The only code in the bot that speaks HTTP to a cloud: clouds.yaml configs (`CloudConfig`,
`load_cloud_config`), one `CloudClient` per cloud and the `CloudPool` of them, and the typed
results (`Server`, `Image`, `Observation`, `RaxSchedule`). Callers may import from here or from
the modules themselves (`bot.cloud.client`, `bot.cloud.models`, ...)."""

from bot.cloud.auth import Session
from bot.cloud.client import CloudClient
from bot.cloud.config import CloudConfig, load_cloud_config
from bot.cloud.limits import RateLimit
from bot.cloud.models import Image, Observation, Server
from bot.cloud.pool import CloudPool
from bot.cloud.rax import RaxSchedule

__all__ = [
    "CloudClient",
    "CloudConfig",
    "CloudPool",
    "Image",
    "Observation",
    "RateLimit",
    "RaxSchedule",
    "Server",
    "Session",
    "load_cloud_config",
]
