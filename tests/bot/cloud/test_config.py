"""load_cloud_config (openstack.config underneath): search order, secure.yaml, OS_CLOUD, OS_* env,
Rackspace, errors that name the file, the cloud and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cloud.config import RACKSPACE_IDENTITY, load_cloud_config
from bot.errors import ConfigError


def clouds(path: Path, body: str, name: str = "clouds.yaml") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / name).write_text(body)
    return path / name


CLOUD = """
clouds:
  {name}:
    auth:
      auth_url: https://{name}.example/identity/v3
      username: alice
      password: pw-{name}
      project_name: proj
      user_domain_name: Default
      project_domain_name: Default
    region_name: R1
"""


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    return {"cwd": tmp_path / "cwd", "home": tmp_path / "home", "etc": tmp_path / "etc"}


def load(dirs: dict[str, Path], cloud: str | None = None,
         env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    return load_cloud_config(cloud, env=env or {}, cwd=dirs["cwd"], home=dirs["home"],
                             system_dir=dirs["etc"])


def test_search_order_first_found_wins(dirs: dict[str, Path], tmp_path: Path) -> None:
    clouds(dirs["etc"], CLOUD.format(name="c"))
    assert load(dirs, "c").auth_url == "https://c.example/identity/v3"
    home_file = clouds(dirs["home"] / ".config" / "openstack", CLOUD.format(name="c").replace(
        "alice", "from-home"))
    assert load(dirs, "c").username == "from-home"
    clouds(dirs["cwd"], CLOUD.format(name="c").replace("alice", "from-cwd"))
    assert load(dirs, "c").username == "from-cwd"
    explicit = clouds(tmp_path / "x", CLOUD.format(name="c").replace("alice", "explicit"))
    cfg = load(dirs, "c", {"OS_CLIENT_CONFIG_FILE": str(explicit)})
    assert cfg.username == "explicit" and cfg.source == str(explicit)
    # first found wins: files are not merged, so a cloud only in a later file is unknown
    home_file.write_text(CLOUD.format(name="other"))
    clouds(dirs["cwd"], CLOUD.format(name="c"))
    with pytest.raises(ConfigError) as info:
        load(dirs, "other")
    assert info.value.key == "clouds.other"
    assert info.value.path == str(dirs["cwd"] / "clouds.yaml")


def test_secure_yaml_overlays(dirs: dict[str, Path]) -> None:
    clouds(dirs["cwd"], CLOUD.format(name="c").replace("      password: pw-c\n", ""))
    clouds(dirs["home"] / ".config" / "openstack",
           "clouds:\n  c:\n    auth:\n      password: from-secure\n", "secure.yaml")
    cfg = load(dirs, "c")
    assert cfg.password == "from-secure"
    assert cfg.username == "alice"  # the rest of auth survives the deep merge


def test_os_cloud_selects_and_argument_overrides(dirs: dict[str, Path]) -> None:
    clouds(dirs["cwd"], CLOUD.format(name="a") + CLOUD.format(name="b").replace(
        "clouds:\n", ""))
    assert load(dirs, env={"OS_CLOUD": "b"}).name == "b"
    assert load(dirs, "a", env={"OS_CLOUD": "b"}).name == "a"
    with pytest.raises(ConfigError, match="several clouds"):
        load(dirs)


def test_named_cloud_is_not_mixed_with_os_env(dirs: dict[str, Path]) -> None:
    # Deliberately changed with openstack.config: OS_* form the `envvars` cloud; they do not
    # fill in a clouds.yaml entry (only the `openstack` CLI's argparse defaults do that). The
    # password of a named cloud belongs in secure.yaml.
    clouds(dirs["cwd"], CLOUD.format(name="c").replace("      password: pw-c\n", "").replace(
        "    region_name: R1\n", ""))
    with pytest.raises(ConfigError) as info:
        load(dirs, "c", {"OS_PASSWORD": "env-pw", "OS_REGION_NAME": "R9"})
    assert info.value.key == "clouds.c.auth.password"


def test_os_env_password(dirs: dict[str, Path]) -> None:
    cfg = load(dirs, env={
        "OS_AUTH_URL": "https://k.example/v3/", "OS_USERNAME": "bob", "OS_PASSWORD": "pw",
        "OS_PROJECT_NAME": "p", "OS_USER_DOMAIN_NAME": "D", "OS_PROJECT_DOMAIN_ID": "d1",
        "OS_REGION_NAME": "RegionTwo", "OS_INTERFACE": "internalURL"})
    assert cfg.auth_type == "password" and cfg.auth_url == "https://k.example/v3/"  # as given
    assert (cfg.username, cfg.auth["project_name"], cfg.auth["user_domain_name"],
            cfg.auth["project_domain_id"]) == ("bob", "p", "D", "d1")
    assert (cfg.region_name, cfg.interface, cfg.source) == ("RegionTwo", "internal",
                                                            "environment")


def test_os_env_application_credential(dirs: dict[str, Path]) -> None:
    cfg = load(dirs, env={"OS_AUTH_URL": "https://k/v3",
                          "OS_AUTH_TYPE": "v3applicationcredential",
                          "OS_APPLICATION_CREDENTIAL_ID": "ac1",
                          "OS_APPLICATION_CREDENTIAL_SECRET": "acs"})
    assert cfg.auth_type == "v3applicationcredential"
    assert (cfg.auth["application_credential_id"],
            cfg.auth["application_credential_secret"]) == ("ac1", "acs")
    assert "acs" not in repr(cfg)


def test_os_env_errors_name_the_variable(dirs: dict[str, Path]) -> None:
    with pytest.raises(ConfigError) as info:
        load(dirs, env={"OS_AUTH_URL": "https://k/v3", "OS_USERNAME": "u",
                        "OS_PROJECT_NAME": "p"})
    assert info.value.key == "OS_PASSWORD"
    with pytest.raises(ConfigError) as info:
        load(dirs, env={"OS_AUTH_URL": "https://k/v3", "OS_USERNAME": "u", "OS_PASSWORD": "x",
                        "OS_PROJECT_NAME": "p", "OS_INTERFACE": "sideways"})
    assert info.value.key == "OS_INTERFACE"


def test_file_errors_name_file_and_key(dirs: dict[str, Path]) -> None:
    path = clouds(dirs["cwd"], CLOUD.format(name="c").replace("      password: pw-c\n", ""))
    with pytest.raises(ConfigError) as info:
        load(dirs, "c")
    assert info.value.path == str(path) and info.value.key == "clouds.c.auth.password"
    assert str(path) in str(info.value) and "clouds.c.auth.password" in str(info.value)
    path.write_text(CLOUD.format(name="c").replace("    region_name: R1\n",
                                                   "    auth_type: no-such-plugin\n"))
    with pytest.raises(ConfigError) as info:
        load(dirs, "c")
    assert info.value.key == "clouds.c.auth_type"


def test_invalid_yaml_names_the_line(dirs: dict[str, Path]) -> None:
    path = clouds(dirs["cwd"], "clouds:\n  c:\n    auth: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load(dirs, "c")
    assert info.value.path == str(path) and info.value.line is not None


def test_nothing_configured(dirs: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="no cloud configured"):
        load(dirs)
    with pytest.raises(ConfigError, match="no clouds.yaml"):
        load(dirs, "prod")


def test_missing_explicit_file(dirs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(dirs, "c", {"OS_CLIENT_CONFIG_FILE": str(tmp_path / "nope.yaml")})
    assert info.value.key == "OS_CLIENT_CONFIG_FILE"


def test_overrides_regions_and_single_cloud_default(dirs: dict[str, Path]) -> None:
    clouds(dirs["cwd"], CLOUD.format(name="c").replace("    region_name: R1\n", (
        "    regions: [R7, R8]\n"
        "    compute_endpoint_override: http://nova.local/v2.1\n"
        "    image_endpoint_override: http://glance.local\n")))
    cfg = load(dirs)  # the only cloud is the default
    assert cfg.region_name == "R7"
    assert cfg.compute_endpoint_override == "http://nova.local/v2.1"
    assert cfg.image_endpoint_override == "http://glance.local"


def test_rackspace_profile_in_clouds_yaml(dirs: dict[str, Path]) -> None:
    clouds(dirs["cwd"], "clouds:\n  rax:\n    profile: rackspace\n    auth_type: "
           "rackspace_apikey\n    auth:\n      username: u\n      api_key: k-123\n"
           "    region_name: IAD\n")
    cfg = load(dirs, "rax")
    assert cfg.is_rackspace and cfg.auth_type == "rackspace_apikey"
    assert cfg.auth_url.rstrip("/") == RACKSPACE_IDENTITY  # from openstacksdk's rackspace profile
    assert (cfg.compute_service_name, cfg.image_service_name) == ("cloudServersOpenStack",
                                                                  "cloudImages")
    assert "k-123" not in repr(cfg) and cfg.api_key == "k-123"


def test_rackspace_env(dirs: dict[str, Path]) -> None:
    cfg = load(dirs, env={"RACKSPACE_USERNAME": "u", "RACKSPACE_API_KEY": "k",
                          "RACKSPACE_REGION": "ORD"})
    assert (cfg.auth_type, cfg.region_name, cfg.username) == ("rackspace_apikey", "ORD", "u")
    with pytest.raises(ConfigError) as info:
        load(dirs, env={"RACKSPACE_USERNAME": "u"})
    assert info.value.key == "RACKSPACE_API_KEY"


def test_repr_hides_secrets(dirs: dict[str, Path]) -> None:
    clouds(dirs["cwd"], CLOUD.format(name="c"))
    cfg = load(dirs, "c")
    assert cfg.password == "pw-c"
    assert "pw-c" not in repr(cfg) and "pw-c" not in str(cfg)
