"""Differential test: `imagebot cloud show --json` against openstack.config itself.

Each case is a clouds.yaml / secure.yaml / clouds-public.yaml / OS_* set-up. The reference side
calls `OpenStackConfig(...).get_one(cloud)` directly (the library behind the `openstack` CLI)
and reads the same fields from the CloudRegion; the imagebot side runs `bot.cloud.show.show`.
Many cases are openstacksdk's own unit-test fixtures (openstack/tests/unit/config/base.py:
USER_CONF, SECURE_CONF, VENDOR_CONF), the rest are common operator set-ups.

Where imagebot deliberately differs (DIFFERENT below), the reason is given and the test asserts
the difference itself. Representation choices applied to both sides (not differences in what
is resolved): secret values are "***", an empty region is null, `interface` is spelled the
Keystone v3 way (`internalURL` -> `internal`, which keystoneauth treats the same).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from openstack.config import OpenStackConfig

from bot.cloud.show import show

SECRETS = {"password", "api_key", "application_credential_secret", "token", "passcode",
           "client_secret"}

# openstacksdk's own fixtures (openstack/tests/unit/config/base.py).
SDK_VENDOR = {"public-clouds": {"_test_cloud_in_our_cloud": {"auth": {
    "auth_url": "http://example.com/v2", "username": "testotheruser",
    "project_name": "testproject"}}}}
SDK_USER = {"clouds": {
    "_test-cloud_": {"profile": "_test_cloud_in_our_cloud", "auth": {
        "auth_url": "http://example.com/v2", "username": "testuser", "password": "testpass"},
        "region_name": "test-region"},
    "_test_cloud_no_vendor": {"profile": "_test_non_existant_cloud", "auth": {
        "auth_url": "http://example.com/v2", "username": "testuser",
        "project_name": "testproject"}, "region-name": "test-region"},
    "_test-cloud-int-project_": {"auth": {
        "username": "testuser", "password": "testpass", "domain_id": "awesome-domain",
        "project_id": 12345, "auth_url": "http://example.com/v2"},
        "region_name": "test-region"},
    "_test-cloud-domain-id_": {"auth": {
        "username": "testuser", "password": "testpass", "project_id": 12345,
        "auth_url": "http://example.com/v2", "domain_id": "6789",
        "project_domain_id": "123456789"}, "region_name": "test-region"},
    "_test_cloud_regions": {"auth": {
        "username": "testuser", "password": "testpass", "project-id": "testproject",
        "auth_url": "http://example.com/v2"}, "regions": [
            {"name": "region1", "values": {"external_network": "region1-network"}},
            {"name": "region2", "values": {"external_network": "my-network"}}]},
    "_test_cloud_hyphenated": {"auth": {
        "username": "testuser", "password": "testpass", "project-id": "12345",
        "auth_url": "http://example.com/v2"}, "region_name": "test-region"},
    "_test-cloud_no_region": {"profile": "_test_cloud_in_our_cloud", "auth": {
        "auth_url": "http://example.com/v2", "username": "testuser",
        "password": "testpass"}},
    "_test-cloud-domain-scoped_": {"auth": {
        "auth_url": "http://example.com/v2", "username": "testuser", "password": "testpass",
        "domain-id": "12345"}},
}}
SDK_SECURE = {"clouds": {"_test_cloud_no_vendor": {"auth": {"password": "testpass"}}}}

DEVSTACK_AUTH = {"auth_url": "https://keystone.example.com:5000/v3/", "username": "alice",
                 "password": "pw", "project_name": "web"}


def cloud(**entry: Any) -> dict[str, Any]:
    """A clouds.yaml with one cloud `c`."""
    return {"clouds": {"c": entry}}


@dataclass
class Case:
    id: str
    clouds: dict[str, Any] | None = None
    secure: dict[str, Any] | None = None
    vendor: dict[str, Any] | None = None
    env: dict[str, str] = field(default_factory=dict)
    cloud: str | None = None


AGREE = [
    Case("sdk-vendor-profile", SDK_USER, SDK_SECURE, SDK_VENDOR, cloud="_test-cloud_"),
    Case("sdk-secure-yaml-password-hyphenated-region", SDK_USER, SDK_SECURE, SDK_VENDOR,
         cloud="_test_cloud_no_vendor"),
    Case("sdk-domain-id-shorthand-int-project", SDK_USER, SDK_SECURE, SDK_VENDOR,
         cloud="_test-cloud-int-project_"),
    Case("sdk-domain-id-and-project-domain-id", SDK_USER, SDK_SECURE, SDK_VENDOR,
         cloud="_test-cloud-domain-id_"),
    Case("sdk-regions-with-values", SDK_USER, SDK_SECURE, SDK_VENDOR,
         cloud="_test_cloud_regions"),
    Case("sdk-hyphenated-project-id", SDK_USER, SDK_SECURE, SDK_VENDOR,
         cloud="_test_cloud_hyphenated"),
    Case("sdk-profile-without-region", SDK_USER, SDK_SECURE, SDK_VENDOR,
         cloud="_test-cloud_no_region"),
    Case("devstack-domain-name-shorthand", cloud(auth=DEVSTACK_AUTH, domain_name="Default",
                                                 region_name="RegionOne"), cloud="c"),
    Case("auth-level-domain-name", cloud(auth={**DEVSTACK_AUTH, "domain_name": "Dev"}),
         cloud="c"),
    Case("explicit-domains-win-over-shorthand", cloud(auth={
        **DEVSTACK_AUTH, "user_domain_id": "u-dom", "project_domain_name": "P",
        "domain_name": "Other"}), cloud="c"),
    Case("region-name-list", cloud(auth=DEVSTACK_AUTH, region_name=["R1", "R2"]), cloud="c"),
    Case("legacy-endpoint-type", cloud(auth=DEVSTACK_AUTH, endpoint_type="internalURL"),
         cloud="c"),
    Case("interface-admin", cloud(auth=DEVSTACK_AUTH, interface="admin"), cloud="c"),
    Case("tenant-name-legacy", cloud(auth={"auth_url": "https://k/v2.0", "username": "u",
                                           "password": "p", "tenant_name": "t"}), cloud="c"),
    Case("app-credential-by-id", cloud(auth_type="v3applicationcredential", auth={
        "auth_url": "https://k:5000/v3", "application_credential_id": "ac1",
        "application_credential_secret": "s3"}, region_name="RegionOne"), cloud="c"),
    Case("app-credential-by-name", cloud(auth_type="v3applicationcredential", auth={
        "auth_url": "https://k:5000/v3", "application_credential_name": "bot",
        "username": "alice", "user_domain_name": "Default",
        "application_credential_secret": "s3"}), cloud="c"),
    Case("app-credential-secret-in-secure-yaml", cloud(
        auth_type="v3applicationcredential", auth={
            "auth_url": "https://k:5000/v3", "application_credential_id": "ac1"}),
         {"clouds": {"c": {"auth": {"application_credential_secret": "from-secure"}}}},
         cloud="c"),
    Case("v3token", cloud(auth_type="v3token", auth={
        "auth_url": "https://k/v3", "token": "gAAAA", "project_id": "p1"}), cloud="c"),
    Case("v3totp", cloud(auth_type="v3totp", auth={
        "auth_url": "https://k/v3", "username": "u", "user_domain_name": "D",
        "passcode": "123456", "project_name": "p", "project_domain_name": "D"}), cloud="c"),
    Case("v3oidcpassword", cloud(auth_type="v3oidcpassword", auth={
        "auth_url": "https://k/v3", "identity_provider": "idp", "protocol": "openid",
        "client_id": "cid", "client_secret": "csec", "username": "u", "password": "pw",
        "discovery_endpoint": "https://idp/.well-known/openid-configuration",
        "project_name": "p", "project_domain_name": "D"}), cloud="c"),
    Case("cacert", cloud(auth=DEVSTACK_AUTH, cacert="/etc/ssl/private-ca.pem"), cloud="c"),
    Case("verify-false", cloud(auth=DEVSTACK_AUTH, verify=False), cloud="c"),
    Case("insecure-beats-cacert", cloud(auth=DEVSTACK_AUTH, insecure=True,
                                        cacert="/etc/ssl/ca.pem"), cloud="c"),
    Case("client-cert-and-key", cloud(auth=DEVSTACK_AUTH, cert="/etc/ssl/me.crt",
                                      key="/etc/ssl/me.key"), cloud="c"),
    Case("os-env-password", env={
        "OS_AUTH_URL": "https://k.example/v3", "OS_USERNAME": "bob", "OS_PASSWORD": "pw",
        "OS_PROJECT_NAME": "p", "OS_USER_DOMAIN_NAME": "D", "OS_PROJECT_DOMAIN_ID": "d1",
        "OS_REGION_NAME": "RegionTwo", "OS_INTERFACE": "internal"}),
    Case("os-cloud-envvars", cloud(auth=DEVSTACK_AUTH), env={
        "OS_CLOUD": "envvars", "OS_AUTH_URL": "https://k.example/v3", "OS_USERNAME": "bob",
        "OS_PASSWORD": "pw", "OS_PROJECT_ID": "p1"}),
    Case("os-env-app-credential-and-cacert", env={
        "OS_AUTH_TYPE": "v3applicationcredential", "OS_AUTH_URL": "https://k/v3",
        "OS_APPLICATION_CREDENTIAL_ID": "ac1", "OS_APPLICATION_CREDENTIAL_SECRET": "s",
        "OS_CACERT": "/etc/ssl/ca.pem"}),
    Case("os-cloud-selects", {"clouds": {"a": {"auth": DEVSTACK_AUTH},
                                         "b": {"auth": {**DEVSTACK_AUTH, "username": "bee"},
                                               "region_name": "B"}}},
         env={"OS_CLOUD": "b"}),
    Case("only-cloud-is-default", cloud(auth=DEVSTACK_AUTH, region_name="R")),
    Case("rackspace-profile-apikey", cloud(profile="rackspace", auth_type="rackspace_apikey",
                                           auth={"username": "u", "api_key": "k"},
                                           region_name="IAD"), cloud="c"),
]

# Deliberate differences: (case, what imagebot does instead, why).
DIFFERENT = [
    (Case("domain-scoped-password", SDK_USER, SDK_SECURE, SDK_VENDOR,
          cloud="_test-cloud-domain-scoped_"),
     "clouds._test-cloud-domain-scoped_.auth.project_name",
     "a domain-scoped token has no compute/image endpoints for a project: imagebot needs a "
     "project, openstack.config lets it through to the first request"),
    (Case("password-missing", cloud(auth={"auth_url": "https://k/v3", "username": "u",
                                          "project_name": "p"}), cloud="c"),
     "clouds.c.auth.password",
     "keystoneauth only finds out at the first login; imagebot says so at start-up"),
    (Case("interface-unknown", cloud(auth=DEVSTACK_AUTH, interface="sideways"), cloud="c"),
     "clouds.c.interface", "no endpoint can ever match; fail at start-up, not per request"),
]


@contextlib.contextmanager
def environ(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def lay_out(tmp: Path, case: Case) -> dict[str, Path]:
    dirs = {"cwd": tmp / "cwd", "home": tmp / "home", "etc": tmp / "etc"}
    for d in dirs.values():
        d.mkdir(parents=True)
    conf = dirs["home"] / ".config" / "openstack"
    conf.mkdir(parents=True)
    for data, where, name in ((case.clouds, dirs["cwd"], "clouds.yaml"),
                              (case.secure, conf, "secure.yaml"),
                              (case.vendor, dirs["etc"], "clouds-public.yaml")):
        if data is not None:
            (where / name).write_text(yaml.safe_dump(data))
    return dirs


def reference(dirs: dict[str, Path], case: Case) -> dict[str, Any]:
    """What openstack.config itself resolves, read straight off the CloudRegion."""
    def files(stem: str) -> list[str]:
        return [str(d / f"{stem}.yaml") for d in (
            dirs["cwd"], dirs["home"] / ".config" / "openstack", dirs["etc"])]

    with environ(case.env), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        occ = OpenStackConfig(config_files=files("clouds"), secure_files=files("secure"),
                              vendor_files=files("clouds-public"))
        auth_type = occ.get_one(case.cloud, validate=False).config.get("auth_type")
        # No keystoneauth plugin exists for Rackspace's API key: load without one.
        region = occ.get_one(case.cloud, validate=not str(auth_type).startswith("rackspace"))
    interface = str(region.get_interface()).lower()
    return {"name": region.name, "auth_type": region.config["auth_type"],
            "auth": {k: ("***" if k in SECRETS else v) for k, v in region.auth.items()},
            "region_name": region.get_region_name() or None,
            "interface": interface[:-3] if interface.endswith("url") else interface,
            "verify": region.get_requests_verify_args()[0]}


def imagebot(dirs: dict[str, Path], case: Case) -> tuple[int, dict[str, Any] | None, str]:
    out, err = io.StringIO(), io.StringIO()
    code = show(case.cloud, as_json=True, out=out, err=err, env=case.env, cwd=dirs["cwd"],
                home=dirs["home"], system_dir=dirs["etc"])
    return code, (json.loads(out.getvalue()) if code == 0 else None), err.getvalue()


def test_the_table_is_big_enough() -> None:
    assert len(AGREE) >= 25 and len({c.id for c in AGREE}) == len(AGREE)


@pytest.mark.parametrize("case", AGREE, ids=lambda c: c.id)
def test_cloud_show_agrees_with_openstack_config(tmp_path: Path, case: Case) -> None:
    dirs = lay_out(tmp_path, case)
    code, shown, err = imagebot(dirs, case)
    assert code == 0, err
    assert shown == json.loads(json.dumps(reference(dirs, case)))
    assert shown is not None and not any(
        v not in ("***", None) for k, v in shown["auth"].items() if k in SECRETS)


@pytest.mark.parametrize(("case", "key", "why"), DIFFERENT, ids=lambda v: getattr(v, "id", ""))
def test_deliberate_differences(tmp_path: Path, case: Case, key: str, why: str) -> None:
    dirs = lay_out(tmp_path, case)
    reference(dirs, case)  # openstack.config accepts it
    code, _, err = imagebot(dirs, case)
    assert code == 1 and key in err and len(err.strip().splitlines()) == 1, why


def test_difference_invalid_yaml_is_reported_not_skipped(tmp_path: Path) -> None:
    # openstack.config logs "Skipping config file" and carries on without it; imagebot names
    # the file and line, so a typo does not silently select another cloud.
    dirs = lay_out(tmp_path, Case("x"))
    (dirs["cwd"] / "clouds.yaml").write_text("clouds:\n  c:\n    auth: [unclosed\n")
    code, _, err = imagebot(dirs, Case("bad-yaml", cloud="c"))
    assert code == 1 and f"{dirs['cwd'] / 'clouds.yaml'}:" in err


def test_difference_missing_explicit_file(tmp_path: Path) -> None:
    # openstack.config ignores an OS_CLIENT_CONFIG_FILE that does not exist.
    dirs = lay_out(tmp_path, Case("x"))
    code, _, err = imagebot(dirs, Case("missing", env={
        "OS_CLIENT_CONFIG_FILE": str(tmp_path / "nope.yaml")}, cloud="c"))
    assert code == 1 and "OS_CLIENT_CONFIG_FILE" in err


def test_difference_rackspace_env(tmp_path: Path) -> None:
    # openstack.config knows no RACKSPACE_* variables; imagebot forms a Rackspace cloud.
    dirs = lay_out(tmp_path, Case("x"))
    code, shown, _ = imagebot(dirs, Case("rax-env", env={
        "RACKSPACE_USERNAME": "u", "RACKSPACE_API_KEY": "k", "RACKSPACE_REGION": "ORD"}))
    assert code == 0 and shown is not None
    assert (shown["auth_type"], shown["region_name"], shown["auth"]["api_key"]) == (
        "rackspace_apikey", "ORD", "***")


def test_table_output_is_readable(tmp_path: Path) -> None:
    case = AGREE[7]
    dirs = lay_out(tmp_path, case)
    out = io.StringIO()
    assert show(case.cloud, out=out, env={}, cwd=dirs["cwd"], home=dirs["home"],
                system_dir=dirs["etc"]) == 0
    text = out.getvalue()
    assert "auth.password" in text and "***" in text and "pw" not in text.split()
    assert re.search(r"^auth\.auth_url +https://keystone\.example\.com:5000/v3/$", text, re.M)


def test_cli_cloud_show_json_and_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import main

    for var in list(os.environ):
        if var.startswith(("OS_", "RACKSPACE_")):
            monkeypatch.delenv(var)
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump(cloud(auth=DEVSTACK_AUTH, region_name="R1")))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    assert main(["cloud", "show", "--cloud", "c", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["auth"]["password"] == "***" and doc["region_name"] == "R1"
    path.write_text(yaml.safe_dump(cloud(auth={**DEVSTACK_AUTH, "password": None})))
    assert main(["cloud", "show", "--cloud", "c"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(path) in err and "clouds.c.auth.password" in err
