"""`imagebot cloud show`: what the cloud configuration resolved to, secrets masked."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from bot.cloud.config import CloudConfig, load_cloud_config
from bot.errors import ConfigError


def describe(config: CloudConfig) -> dict[str, Any]:
    """The `cloud show --json` object: name, auth_type and auth as configured (secrets "***"),
    region_name, interface and verify (true, false or the CA bundle path)."""
    return {"name": config.name, "auth_type": config.auth_type, "auth": config.masked_auth(),
            "region_name": config.region_name, "interface": config.interface,
            "verify": config.verify}


def table(doc: dict[str, Any]) -> str:
    """The same as `describe`, as aligned `key  value` lines."""
    rows: list[tuple[str, str]] = []
    for key, value in doc.items():
        if isinstance(value, dict):
            rows.extend((f"{key}.{k}", _text(v)) for k, v in value.items())
        else:
            rows.append((key, _text(value)))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def show(cloud_name: str | None, *, as_json: bool = False, out: TextIO | None = None,
         err: TextIO | None = None, env: dict[str, str] | None = None,
         cwd: Path | None = None, home: Path | None = None,
         system_dir: Path | None = None) -> int:
    """CLI entry: 0 and the resolved cloud, or 1 and one line naming file, cloud and key."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        config = load_cloud_config(cloud_name, env=env, cwd=cwd, home=home,
                                   system_dir=system_dir)
    except ConfigError as exc:
        print(f"imagebot: cloud configuration cannot be used: {exc}", file=err)
        return 1
    doc = describe(config)
    print(json.dumps(doc, sort_keys=False) if as_json else table(doc), file=out)
    return 0
