"""keystoneauth1 logging in to the simulated cloud, run as its own process (`imagebot
cloud-sim`), with the config loaded by openstack.config from a clouds.yaml: password and
v3applicationcredential, a 401 causing exactly one re-authentication, and TLS settings reaching
the httpx client."""

from __future__ import annotations

import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import certifi
import httpx
import pytest

from bench.procs import spawn
from bot.cloud.client import CloudClient
from bot.cloud.config import load_cloud_config
from bot.errors import AuthFailed, ConfigError
from sandbox.cloud.model import DEMO_APP_CRED_ID, DEMO_APP_CRED_SECRET

CLOUDS = """
clouds:
  pw:
    auth:
      auth_url: {url}/identity/v3
      username: demo
      project_name: demo
    domain_name: Default
    region_name: RegionOne
  ac:
    auth_type: v3applicationcredential
    auth:
      auth_url: {url}/identity
      application_credential_id: {ac_id}
    region_name: RegionOne
"""
SECURE = """
clouds:
  pw:
    auth:
      password: secret
  ac:
    auth:
      application_credential_secret: {ac_secret}
"""


@pytest.fixture
async def sim_url() -> AsyncIterator[str]:
    imagebot = str(Path(sys.executable).with_name("imagebot"))
    proc, url = await spawn([imagebot, "cloud-sim", "--port", "0", "--servers", "2"],
                            r"listening on (http://\S+)")
    try:
        yield url
    finally:
        proc.kill()
        await proc.wait()


def load(tmp_path: Path, url: str, name: str):  # type: ignore[no-untyped-def]
    (tmp_path / "clouds.yaml").write_text(CLOUDS.format(url=url, ac_id=DEMO_APP_CRED_ID))
    (tmp_path / "secure.yaml").write_text(SECURE.format(ac_secret=DEMO_APP_CRED_SECRET))
    return load_cloud_config(name, env={}, cwd=tmp_path, home=tmp_path / "home",
                             system_dir=tmp_path / "etc")


@pytest.mark.parametrize("name", ["pw", "ac"])
async def test_keystoneauth_logs_in_and_picks_catalog_endpoints(
        tmp_path: Path, sim_url: str, name: str) -> None:
    cfg = load(tmp_path, sim_url, name)
    assert cfg.auth_type == ("password" if name == "pw" else "v3applicationcredential")
    async with CloudClient(cfg) as client:
        compute, image = await client.endpoints()
        assert (compute, image) == (f"{sim_url}/compute/v2.1", f"{sim_url}/image/v2")
        names = {s.name for s in await client.list_servers()}
        assert names >= {"load-1", "load-2"}
        assert client.authentications == 1


async def test_a_401_re_authenticates_exactly_once(tmp_path: Path, sim_url: str) -> None:
    cfg = load(tmp_path, sim_url, "pw")
    async with CloudClient(cfg) as client, httpx.AsyncClient(base_url=sim_url) as control:
        await client.list_servers()
        before = await client.endpoints()
        # Every token issued so far is now refused: the next call gets a 401.
        r = await control.post("/_sim/faults", json={"kind": "revoke_tokens"})
        assert r.status_code in (200, 201), r.text
        await client.list_servers()
        assert client.authentications == 2
        assert await client.endpoints() == before
        # Revoked again and the login refused too: one re-auth attempt, then AuthFailed.
        await control.post("/_sim/faults", json={"kind": "revoke_tokens"})
        r = await control.post("/_sim/faults", json={
            "kind": "http", "status": 401, "path": "/auth/tokens$", "method": "POST"})
        assert r.status_code in (200, 201), r.text
        with pytest.raises(AuthFailed, match="refused the credentials"):
            await client.list_servers()
        assert client.authentications == 3


def test_tls_settings_reach_httpx(tmp_path: Path) -> None:
    """cacert / insecure / cert+key from clouds.yaml end up in the SSLContext httpx gets."""
    ca = certifi.where()
    (tmp_path / "clouds.yaml").write_text(
        "clouds:\n"
        "  ca:\n    auth: {auth_url: 'https://k/v3', username: u, password: p,"
        " project_name: p}\n"
        f"    cacert: {ca}\n"
        "  noverify:\n    auth: {auth_url: 'https://k/v3', username: u, password: p,"
        " project_name: p}\n    verify: false\n"
        "  missing:\n    auth: {auth_url: 'https://k/v3', username: u, password: p,"
        " project_name: p}\n"
        f"    cacert: {tmp_path / 'nope.pem'}\n")

    def cfg(name: str):  # type: ignore[no-untyped-def]
        return load_cloud_config(name, env={}, cwd=tmp_path, home=tmp_path / "h",
                                 system_dir=tmp_path / "e")

    with_ca = CloudClient(cfg("ca"))
    assert isinstance(with_ca.tls, ssl.SSLContext)
    assert with_ca.tls.verify_mode == ssl.CERT_REQUIRED
    assert with_ca.tls.cert_store_stats()["x509_ca"] > 0  # the bundle was loaded
    pool = with_ca._http._transport._pool  # type: ignore[attr-defined]
    assert pool._ssl_context is with_ca.tls
    off = CloudClient(cfg("noverify"))
    assert off.tls is False
    assert off._http._transport._pool._ssl_context.verify_mode == ssl.CERT_NONE  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="cacert"):
        CloudClient(cfg("missing"))
