"""Running the simulator: the CLI entry point and the in-process helper."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from sandbox.cloud.model import World
from sandbox.cloud.serve import clouds_yaml, running_cloud, serve
from tests.sandbox.cloud.conftest import PASSWORD_AUTH

ROOT = Path(__file__).resolve().parents[3]


async def test_running_cloud_serves_on_a_free_port(world: World) -> None:
    async with running_cloud(world) as url:
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        async with httpx.AsyncClient(base_url=url) as client:
            r = await client.post("/identity/v3/auth/tokens", json=PASSWORD_AUTH)
            assert r.status_code == 201
            r = await client.get("/compute/v2.1/servers",
                                 headers={"X-Auth-Token": r.headers["X-Subject-Token"]})
            assert len(r.json()["servers"]) == 6


def test_clouds_yaml_block_is_valid() -> None:
    cloud = yaml.safe_load(clouds_yaml("http://h:1"))["clouds"]["sandbox"]
    assert cloud["auth"]["auth_url"] == "http://h:1/identity/v3"
    assert cloud["auth"]["username"] == "demo" and cloud["auth"]["password"] == "secret"
    assert cloud["region_name"] == "RegionOne"


def test_serve_rejects_bad_arguments() -> None:
    assert serve("127.0.0.1", 0, speed=0, servers=0) == 2
    assert serve("127.0.0.1", 0, speed=1, servers=-1) == 2


def test_cli_prints_url_and_clouds_yaml_then_serves_until_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "cloud-sim", "--port", "0", "--speed", "50",
         "--servers", "3"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("cloud-sim listening on http://127.0.0.1:"), first
        url = first.rsplit(" ", 1)[1].strip()
        lines = []
        while True:
            line = proc.stdout.readline()
            lines.append(line)
            if line.strip().startswith("identity_api_version") or not line:
                break
        block = "".join(lines[lines.index("clouds:\n"):])
        cloud = yaml.safe_load(block)["clouds"]["sandbox"]
        assert cloud["auth"]["auth_url"] == f"{url}/identity/v3"
        with httpx.Client(base_url=url, timeout=10) as client:
            r = client.post("/identity/v3/auth/tokens", json=PASSWORD_AUTH)
            names = {s["name"] for s in client.get(
                "/compute/v2.1/servers",
                headers={"X-Auth-Token": r.headers["X-Subject-Token"]}).json()["servers"]}
        assert {"web-1", "load-1", "load-3"} <= names and "load-4" not in names
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
