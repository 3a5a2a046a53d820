"""Cloud settings the way OpenStack users already keep them: clouds.yaml, secure.yaml, OS_*.

Resolution (mirrors openstacksdk / python-openstackclient):
1. A cloud name (`cloud` argument, else `OS_CLOUD`) selects an entry of the first clouds.yaml
   found (`OS_CLIENT_CONFIG_FILE`, `./clouds.yaml`, `~/.config/openstack/clouds.yaml`,
   `/etc/openstack/clouds.yaml`), deep-merged with the same entry of the first secure.yaml found
   (`OS_CLIENT_SECURE_FILE`, then the same directories). Like osc, `OS_PASSWORD`,
   `OS_APPLICATION_CREDENTIAL_SECRET` and `OS_REGION_NAME` fill in what the entry leaves out.
2. Without a name, plain `OS_*` variables (`OS_AUTH_URL` set) form the cloud.
3. Else `RACKSPACE_USERNAME` + `RACKSPACE_API_KEY` (+ `RACKSPACE_REGION`) form a Rackspace cloud.
4. Else a clouds.yaml holding exactly one cloud is used.

Every problem is a `ConfigError` naming the file and the key. Secrets never appear in reprs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.errors import ConfigError

RACKSPACE_IDENTITY = "https://identity.api.rackspacecloud.com/v2.0"
RACKSPACE_COMPUTE_NAME = "cloudServersOpenStack"  # never the v1 "cloudServers" entry
RACKSPACE_IMAGE_NAME = "cloudImages"
AUTH_TYPES = ("password", "v3applicationcredential", "rackspace_apikey", "rackspace_password")
INTERFACES = ("public", "internal", "admin")
SYSTEM_DIR = Path("/etc/openstack")

# OS_* variable -> key inside `auth` (or at the top level for the non-auth ones).
_ENV_AUTH = {
    "OS_AUTH_URL": "auth_url",
    "OS_USERNAME": "username",
    "OS_USER_ID": "user_id",
    "OS_PASSWORD": "password",
    "OS_PROJECT_NAME": "project_name",
    "OS_TENANT_NAME": "project_name",
    "OS_PROJECT_ID": "project_id",
    "OS_TENANT_ID": "project_id",
    "OS_USER_DOMAIN_NAME": "user_domain_name",
    "OS_USER_DOMAIN_ID": "user_domain_id",
    "OS_PROJECT_DOMAIN_NAME": "project_domain_name",
    "OS_PROJECT_DOMAIN_ID": "project_domain_id",
    "OS_APPLICATION_CREDENTIAL_ID": "application_credential_id",
    "OS_APPLICATION_CREDENTIAL_NAME": "application_credential_name",
    "OS_APPLICATION_CREDENTIAL_SECRET": "application_credential_secret",
}
_ENV_TOP = {
    "OS_AUTH_TYPE": "auth_type",
    "OS_REGION_NAME": "region_name",
    "OS_INTERFACE": "interface",
    "OS_COMPUTE_ENDPOINT_OVERRIDE": "compute_endpoint_override",
    "OS_IMAGE_ENDPOINT_OVERRIDE": "image_endpoint_override",
}


@dataclass(frozen=True)
class CloudConfig:
    """Everything needed to authenticate and pick endpoints. Secret fields are hidden in repr."""

    name: str
    auth_type: str
    auth_url: str
    username: str | None = None
    user_id: str | None = None
    password: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    project_name: str | None = None
    project_id: str | None = None
    user_domain_name: str | None = None
    user_domain_id: str | None = None
    project_domain_name: str | None = None
    project_domain_id: str | None = None
    application_credential_id: str | None = None
    application_credential_name: str | None = None
    application_credential_secret: str | None = field(default=None, repr=False)
    region_name: str | None = None
    interface: str = "public"
    compute_endpoint_override: str | None = None
    image_endpoint_override: str | None = None
    compute_service_name: str | None = None
    image_service_name: str | None = None
    source: str = ""  # the file or "environment" this came from, for messages

    @property
    def is_rackspace(self) -> bool:
        """Rackspace identity v2.0 (API key or password)."""
        return self.auth_type.startswith("rackspace_")

    def secrets(self) -> tuple[str, ...]:
        """The secret values (for tests and log scrubbing)."""
        return tuple(s for s in (self.password, self.api_key,
                                 self.application_credential_secret) if s)


def load_cloud_config(cloud: str | None = None, env: Mapping[str, str] | None = None,
                      cwd: Path | None = None, home: Path | None = None,
                      system_dir: Path | None = None) -> CloudConfig:
    """Resolve the cloud to use (see the module docstring for the order)."""
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    home = Path.home() if home is None else home
    system_dir = SYSTEM_DIR if system_dir is None else system_dir
    dirs = [cwd, home / ".config" / "openstack", system_dir]
    name = cloud or env.get("OS_CLOUD") or None

    clouds_path = _first_file(env.get("OS_CLIENT_CONFIG_FILE"), dirs, "clouds")
    if name is not None:
        if clouds_path is None:
            if name == "envvars" and env.get("OS_AUTH_URL"):
                return _from_env(env)
            raise ConfigError(f"cloud {name!r} requested but no clouds.yaml found (looked in "
                              + ", ".join(str(d) for d in dirs) + ")", key="OS_CLOUD")
        return _from_file(name, clouds_path, env, dirs)
    if env.get("OS_AUTH_URL"):
        return _from_env(env)
    if env.get("RACKSPACE_USERNAME") or env.get("RACKSPACE_API_KEY"):
        return _from_rackspace_env(env)
    if clouds_path is not None:
        clouds = _clouds(clouds_path)
        if len(clouds) == 1:
            return _from_file(next(iter(clouds)), clouds_path, env, dirs)
        raise ConfigError("several clouds defined; choose one with --cloud or OS_CLOUD: "
                          + ", ".join(sorted(clouds)), path=str(clouds_path), key="clouds")
    raise ConfigError("no cloud configured: set OS_CLOUD with a clouds.yaml, or OS_AUTH_URL and "
                      "friends, or RACKSPACE_USERNAME/RACKSPACE_API_KEY")


# ---- files ----------------------------------------------------------------------------------


def _first_file(explicit: str | None, dirs: list[Path], stem: str) -> Path | None:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError("file does not exist", path=str(path),
                              key="OS_CLIENT_CONFIG_FILE" if stem == "clouds"
                              else "OS_CLIENT_SECURE_FILE")
        return path
    for d in dirs:
        for ext in ("yaml", "yml"):
            path = d / f"{stem}.{ext}"
            if path.is_file():
                return path
    return None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"invalid YAML: {problem}", path=str(path),
                          line=mark.line + 1 if mark is not None else None) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", path=str(path))
    return data


def _clouds(path: Path) -> dict[str, Any]:
    clouds = _read_yaml(path).get("clouds")
    if not isinstance(clouds, dict):
        raise ConfigError("missing or not a mapping", path=str(path), key="clouds")
    return clouds


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _from_file(name: str, path: Path, env: Mapping[str, str], dirs: list[Path]) -> CloudConfig:
    clouds = _clouds(path)
    if name not in clouds:
        known = ", ".join(sorted(clouds)) or "none"
        raise ConfigError(f"no such cloud (defined: {known})", path=str(path),
                          key=f"clouds.{name}")
    entry = clouds[name]
    if not isinstance(entry, dict):
        raise ConfigError("must be a mapping", path=str(path), key=f"clouds.{name}")
    secure_path = _first_file(env.get("OS_CLIENT_SECURE_FILE"), dirs, "secure")
    if secure_path is not None:
        secure = _read_yaml(secure_path).get("clouds") or {}
        if not isinstance(secure, dict):
            raise ConfigError("not a mapping", path=str(secure_path), key="clouds")
        extra = secure.get(name)
        if extra is not None:
            if not isinstance(extra, dict):
                raise ConfigError("must be a mapping", path=str(secure_path),
                                  key=f"clouds.{name}")
            entry = _merge(entry, extra)
    entry = dict(entry)
    auth = entry.get("auth") or {}
    if not isinstance(auth, dict):
        raise ConfigError("must be a mapping", path=str(path), key=f"clouds.{name}.auth")
    auth = dict(auth)
    # What osc's OS_* arguments would fill in when the file leaves it out.
    for var, key in (("OS_PASSWORD", "password"),
                     ("OS_APPLICATION_CREDENTIAL_SECRET", "application_credential_secret")):
        if env.get(var) and not auth.get(key):
            auth[key] = env[var]
    if env.get("OS_REGION_NAME") and not entry.get("region_name") and not entry.get("regions"):
        entry["region_name"] = env["OS_REGION_NAME"]
    entry["auth"] = auth
    return _build(name, entry, source=str(path), prefix=f"clouds.{name}.")


def _from_env(env: Mapping[str, str]) -> CloudConfig:
    auth = {key: env[var] for var, key in _ENV_AUTH.items() if env.get(var)}
    entry: dict[str, Any] = {key: env[var] for var, key in _ENV_TOP.items() if env.get(var)}
    entry["auth"] = auth
    return _build("envvars", entry, source="environment", prefix="OS_", env_names=True)


def _from_rackspace_env(env: Mapping[str, str]) -> CloudConfig:
    for var in ("RACKSPACE_USERNAME", "RACKSPACE_API_KEY"):
        if not env.get(var):
            raise ConfigError("must be set for Rackspace", key=var)
    entry: dict[str, Any] = {
        "profile": "rackspace", "auth_type": "rackspace_apikey",
        "auth": {"username": env["RACKSPACE_USERNAME"], "api_key": env["RACKSPACE_API_KEY"],
                 "auth_url": env.get("RACKSPACE_AUTH_URL") or RACKSPACE_IDENTITY},
    }
    if env.get("RACKSPACE_REGION"):
        entry["region_name"] = env["RACKSPACE_REGION"]
    return _build("rackspace", entry, source="environment", prefix="RACKSPACE_",
                  env_names=True)


# ---- validation -----------------------------------------------------------------------------


def _build(name: str, entry: Mapping[str, Any], *, source: str, prefix: str,
           env_names: bool = False) -> CloudConfig:
    """Validate one cloud entry (already merged) into a CloudConfig."""
    path = None if source == "environment" else source

    def where(key: str) -> str:
        if env_names:
            if prefix == "OS_":
                return "OS_" + key.rsplit(".", 1)[-1].upper()
            return prefix + key.rsplit(".", 1)[-1].upper()
        return prefix + key

    def text(mapping: Mapping[str, Any], key: str, full: str) -> str | None:
        value = mapping.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError("must be a string", path=path, key=where(full))
        return str(value)

    auth_raw = entry.get("auth") or {}
    if not isinstance(auth_raw, Mapping):
        raise ConfigError("must be a mapping", path=path, key=where("auth"))
    auth: Mapping[str, Any] = auth_raw

    def a(key: str) -> str | None:
        return text(auth, key, f"auth.{key}")

    profile = text(entry, "profile", "profile")
    auth_type = text(entry, "auth_type", "auth_type")
    auth_url = a("auth_url")
    rackspace = (profile == "rackspace" or (auth_type or "").startswith("rackspace")
                 or "rackspacecloud.com" in (auth_url or ""))
    if auth_type is None:
        if rackspace:
            auth_type = "rackspace_apikey" if a("api_key") else "rackspace_password"
        elif a("application_credential_secret"):
            auth_type = "v3applicationcredential"
        else:
            auth_type = "password"
    auth_type = {"v3password": "password", "application_credential": "v3applicationcredential",
                 "v3applicationcredentials": "v3applicationcredential"}.get(auth_type, auth_type)
    if auth_type not in AUTH_TYPES:
        raise ConfigError(f"unsupported auth type {auth_type!r} (supported: "
                          + ", ".join(AUTH_TYPES) + ")", path=path, key=where("auth_type"))
    if rackspace and not auth_type.startswith("rackspace"):
        auth_type = "rackspace_password"
    if auth_url is None:
        if not auth_type.startswith("rackspace"):
            raise ConfigError("is required", path=path, key=where("auth.auth_url"))
        auth_url = RACKSPACE_IDENTITY

    def need(key: str) -> str:
        value = a(key)
        if value is None:
            raise ConfigError(f"is required for auth type {auth_type}", path=path,
                              key=where(f"auth.{key}"))
        return value

    if auth_type == "password":
        if a("username") is None and a("user_id") is None:
            need("username")
        need("password")
        if a("project_name") is None and a("project_id") is None:
            raise ConfigError("a project is required to get a service catalog", path=path,
                              key=where("auth.project_name"))
    elif auth_type == "v3applicationcredential":
        need("application_credential_secret")
        if a("application_credential_id") is None:
            need("application_credential_name")
            if a("username") is None and a("user_id") is None:
                need("username")
    elif auth_type == "rackspace_apikey":
        need("username")
        need("api_key")
    else:
        need("username")
        need("password")

    region = text(entry, "region_name", "region_name")
    regions = entry.get("regions")
    if region is None and regions:
        if not isinstance(regions, list):
            raise ConfigError("must be a list", path=path, key=where("regions"))
        first = regions[0]
        region = str(first.get("name") if isinstance(first, Mapping) else first)
    interface = (text(entry, "interface", "interface") or "public").lower()
    interface = interface[:-3] if interface.endswith("url") else interface
    if interface not in INTERFACES:
        raise ConfigError(f"must be one of {', '.join(INTERFACES)}", path=path,
                          key=where("interface"))
    is_rax = auth_type.startswith("rackspace")
    return CloudConfig(
        name=name, auth_type=auth_type, auth_url=auth_url.rstrip("/"),
        username=a("username"), user_id=a("user_id"), password=a("password"),
        api_key=a("api_key"), project_name=a("project_name"), project_id=a("project_id"),
        user_domain_name=a("user_domain_name"), user_domain_id=a("user_domain_id"),
        project_domain_name=a("project_domain_name"),
        project_domain_id=a("project_domain_id"),
        application_credential_id=a("application_credential_id"),
        application_credential_name=a("application_credential_name"),
        application_credential_secret=a("application_credential_secret"),
        region_name=region, interface=interface,
        compute_endpoint_override=text(entry, "compute_endpoint_override",
                                       "compute_endpoint_override"),
        image_endpoint_override=text(entry, "image_endpoint_override",
                                     "image_endpoint_override"),
        compute_service_name=text(entry, "compute_service_name", "compute_service_name")
        or (RACKSPACE_COMPUTE_NAME if is_rax else None),
        image_service_name=text(entry, "image_service_name", "image_service_name")
        or (RACKSPACE_IMAGE_NAME if is_rax else None),
        source=source,
    )
