"""Identity: catalog endpoint selection (Keystone and Rackspace samples), token URLs, Rackspace."""

from __future__ import annotations

import json

import httpx
import pytest

from bot.cloud.auth import parse_rackspace, select_endpoint, tokens_url
from bot.cloud.client import CloudClient
from bot.cloud.keystone import session_from_body
from bot.errors import ConfigError

from .conftest import NOW, Clock, FakeCloud, Sleeps, config, sample, server_doc

RAX = "rackspace/identity/auth-response.json"


def rax_config(**kw: object):  # type: ignore[no-untyped-def]
    base: dict[str, object] = dict(auth_type="rackspace_apikey",
                                   auth_url="https://identity.api.rackspacecloud.com/v2.0",
                                   username="maeker123", password=None, api_key="rax-KEY-42",
                                   project_name=None, compute_service_name="cloudServersOpenStack",
                                   image_service_name="cloudImages")
    base.update(kw)
    return config(**base)


def test_rackspace_sample_default_region() -> None:
    session = parse_rackspace(rax_config(), sample(RAX))
    assert session.compute_url == "https://iad.servers.api.rackspacecloud.com/v2/929418"
    assert session.image_url == "https://iad.images.api.rackspacecloud.com/v2"
    assert session.project_id == "929418"
    assert session.expires_at.year == 2016


def test_rackspace_region_and_v1_never_chosen() -> None:
    doc = sample(RAX)
    # Put a v1 cloudServers entry first, as real catalogs do: selection is by name.
    doc["access"]["serviceCatalog"].insert(0, {"name": "cloudServers", "type": "compute",
                                               "endpoints": [{"publicURL": "https://v1/"}]})
    session = parse_rackspace(rax_config(region_name="SYD"), doc)
    assert session.compute_url == "https://syd.servers.api.rackspacecloud.com/v2/929418"
    assert session.image_url == "https://syd.images.api.rackspacecloud.com/v2"


def test_rackspace_unknown_region_lists_known() -> None:
    with pytest.raises(ConfigError, match="IAD"):
        parse_rackspace(rax_config(region_name="MARS"), sample(RAX))


def test_keystone_catalog_by_region_and_interface() -> None:
    catalog = [{"type": "compute", "name": "nova", "endpoints": [
        {"interface": "public", "region": "R1", "url": "https://r1-pub/v2.1"},
        {"interface": "internal", "region": "R1", "url": "https://r1-int/v2.1"},
        {"interface": "public", "region": "R2", "url": "https://r2-pub/v2.1"}]}]
    assert select_endpoint(catalog, "compute", region="R2",
                           interface="public") == "https://r2-pub/v2.1"
    assert select_endpoint(catalog, "compute", region="R1",
                           interface="internal") == "https://r1-int/v2.1"
    with pytest.raises(ConfigError, match="no compute service"):
        select_endpoint(catalog, "compute", region=None, interface="public", name="other")


def test_keystone_catalog_via_keystoneauth_by_region_and_interface() -> None:
    def svc(kind: str) -> dict[str, object]:
        return {"type": kind, "name": kind, "endpoints": [
            {"interface": i, "region": r, "region_id": r, "url": f"https://{r}-{i}/{kind}"}
            for r in ("R1", "R2") for i in ("public", "internal")]}

    doc = {"token": {"expires_at": "2026-03-01T13:00:00Z", "issued_at": "2026-03-01T12:00:00Z",
                     "methods": ["password"], "user": {"id": "u", "name": "u"},
                     "project": {"id": "p1", "name": "demo"},
                     "catalog": [svc("compute"), svc("image")]}}
    session = session_from_body(config(region_name="R2", interface="internal"), "tok", doc)
    assert (session.compute_url, session.image_url) == ("https://R2-internal/compute",
                                                        "https://R2-internal/image/v2")
    assert session.project_id == "p1" and session.expires_at.tzinfo is not None
    with pytest.raises(ConfigError, match="R1, R2"):
        session_from_body(config(region_name="R9"), "tok", doc)


def test_keystone_sample_without_compute_is_a_clear_error() -> None:
    doc = sample("keystone/auth/responses/project-scoped-password.json")
    with pytest.raises(ConfigError, match="compute"):
        session_from_body(config(), "tok", doc)
    session = session_from_body(config(compute_endpoint_override="http://nova/v2.1/",
                                       image_endpoint_override="http://glance:9292"), "tok", doc)
    assert (session.compute_url, session.image_url) == ("http://nova/v2.1",
                                                        "http://glance:9292/v2")
    assert "tok" not in repr(session)


def test_tokens_url_variants() -> None:
    assert tokens_url(config(auth_url="http://k/identity")) == "http://k/identity/v3/auth/tokens"
    assert tokens_url(config(auth_url="http://k/v3")) == "http://k/v3/auth/tokens"
    assert tokens_url(rax_config()) == "https://identity.api.rackspacecloud.com/v2.0/tokens"


async def test_rackspace_client_flow() -> None:
    requests: list[httpx.Request] = []
    doc = sample(RAX)
    doc["access"]["token"]["expires"] = "2026-03-02T12:00:00.000Z"

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.path == "/v2.0/tokens":
            return httpx.Response(200, json=doc)
        assert request.url.host == "iad.servers.api.rackspacecloud.com"
        assert request.headers["x-auth-token"] == doc["access"]["token"]["id"]
        return httpx.Response(200, json={"servers": [server_doc()]})

    async with CloudClient(rax_config(), transport=httpx.MockTransport(handler),
                           clock=Clock(NOW), sleep=Sleeps()) as client:
        assert [s.name for s in await client.list_servers()] == ["web-1"]
    body = json.loads(requests[0].content)
    assert body == {"auth": {"RAX-KSKEY:apiKeyCredentials": {"username": "maeker123",
                                                             "apiKey": "rax-KEY-42"}}}


async def test_every_keystone_login_tells_its_token_to_on_token(
        fake: FakeCloud, clock: Clock, sleeps: Sleeps) -> None:
    """The first login and the re-authentication after a 401 each hand over the new token
    (the log filter learns it: bot.logs.LearnedSecrets)."""
    told: list[str] = []
    fake.on("GET", r"/servers/detail$", httpx.Response(200, json={"servers": []}))
    async with CloudClient(config(), transport=httpx.MockTransport(fake.handler), clock=clock,
                           sleep=sleeps, on_token=told.append) as client:
        await client.list_servers()
        assert told == fake.tokens and len(told) == 1
        fake.tokens.append("someone-else")  # our token is no longer the valid one: a 401
        await client.list_servers()
    assert len(told) == 2 and told[1] == fake.tokens[-1] != told[0]
    assert client.authentications == 2


async def test_a_rackspace_login_tells_its_token_to_on_token() -> None:
    doc = sample(RAX)
    doc["access"]["token"]["expires"] = "2026-03-02T12:00:00.000Z"

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2.0/tokens":
            return httpx.Response(200, json=doc)
        return httpx.Response(200, json={"servers": []})

    told: list[str] = []
    async with CloudClient(rax_config(), transport=httpx.MockTransport(handler),
                           clock=Clock(NOW), sleep=Sleeps(), on_token=told.append) as client:
        await client.list_servers()
    assert told == [doc["access"]["token"]["id"]]
