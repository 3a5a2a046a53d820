"""Cloud settings the way OpenStack users already keep them, resolved by `openstack.config`.

`openstack.config` (openstacksdk, the library behind the `openstack` CLI) does the resolution:
the clouds.yaml / secure.yaml search path, `OS_CLIENT_CONFIG_FILE` / `OS_CLIENT_SECURE_FILE`,
`OS_*` variables (the `envvars` cloud, also reachable as `OS_CLOUD=envvars`), hyphenated keys,
`domain_name`/`domain_id` shorthand, `region_name` lists and `regions[].values`, the legacy
`endpoint_type`, vendor profiles, `cacert` / `verify` / `insecure` / `cert` / `key`. This module
only adds what imagebot needs on top, each listed in tests/bot/cloud/test_differential.py:

- `auth_type: rackspace_apikey` (and `rackspace_password`) is loaded without a keystoneauth
  plugin (there is no maintained one); imagebot's own code in `bot.cloud.auth` authenticates it.
- `RACKSPACE_USERNAME` + `RACKSPACE_API_KEY` (+ `RACKSPACE_REGION`) form a Rackspace cloud when
  nothing else is configured.
- Problems openstack.config would let through to the first request (or skip silently: invalid
  YAML, a missing `OS_CLIENT_CONFIG_FILE`) are a `ConfigError` naming the file, cloud and key.

Secrets never appear in reprs.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.errors import ConfigError

RACKSPACE_IDENTITY = "https://identity.api.rackspacecloud.com/v2.0"
RACKSPACE_COMPUTE_NAME = "cloudServersOpenStack"  # never the v1 "cloudServers" entry
RACKSPACE_IMAGE_NAME = "cloudImages"
RACKSPACE_AUTH_TYPES = ("rackspace_apikey", "rackspace_password")
INTERFACES = ("public", "internal", "admin")
SECRET_KEYS = frozenset({"password", "api_key", "application_credential_secret", "token",
                         "passcode", "client_secret"})
_SUFFIXES = (".yaml", ".yml", ".json")

# What an auth type cannot work without: each tuple is "one of these". keystoneauth checks
# only some of these when the plugin is built (others fail with a TypeError, or at the first
# request), so we say which key is missing, and where, before that.
_USER = ("username", "user_id")
_PROJECT = ("project_name", "project_id")
_REQUIRED: dict[str, tuple[tuple[str, ...], ...]] = {
    "password": (("auth_url",), _USER, ("password",), _PROJECT),
    "v3password": (("auth_url",), _USER, ("password",), _PROJECT),
    "v2password": (("auth_url",), _USER, ("password",)),
    "v3applicationcredential": (("auth_url",), ("application_credential_secret",),
                                ("application_credential_id", "application_credential_name")),
    "token": (("auth_url",), ("token",)),
    "v3token": (("auth_url",), ("token",)),
    "v3totp": (("auth_url",), _USER, ("passcode",)),
    "rackspace_apikey": (("username",), ("api_key",)),
    "rackspace_password": (("username",), ("password",)),
}


@dataclass(frozen=True)
class CloudConfig:
    """One resolved cloud: what the client needs to authenticate and pick endpoints.

    `auth` holds the auth fields as configured (after openstack.config's merging); `region` is
    openstack.config's CloudRegion for Keystone clouds (None for Rackspace and hand-built
    configs), whose `get_auth()` gives the keystoneauth plugin.
    """

    name: str
    auth_type: str
    auth: Mapping[str, Any] = field(default_factory=dict, repr=False)
    region_name: str | None = None
    interface: str = "public"
    verify: bool | str = True  # False, True or a CA bundle path
    cert: str | None = None
    key: str | None = None
    compute_endpoint_override: str | None = None
    image_endpoint_override: str | None = None
    compute_service_name: str | None = None
    image_service_name: str | None = None
    source: str = ""  # the file or "environment" this came from, for messages
    region: Any = field(default=None, repr=False, compare=False)

    @property
    def is_rackspace(self) -> bool:
        """Rackspace identity v2.0 (API key or password): imagebot's own auth code."""
        return self.auth_type.startswith("rackspace_")

    def _get(self, key: str) -> str | None:
        value = self.auth.get(key)
        return None if value in (None, "") else str(value)

    @property
    def auth_url(self) -> str:
        """The identity endpoint as configured (Rackspace's public one by default)."""
        return self._get("auth_url") or (RACKSPACE_IDENTITY if self.is_rackspace else "")

    @property
    def username(self) -> str | None:
        """auth.username."""
        return self._get("username")

    @property
    def password(self) -> str | None:
        """auth.password."""
        return self._get("password")

    @property
    def api_key(self) -> str | None:
        """auth.api_key (Rackspace)."""
        return self._get("api_key")

    def secrets(self) -> tuple[str, ...]:
        """The secret values (for tests and log scrubbing)."""
        return tuple(str(v) for k, v in self.auth.items() if k in SECRET_KEYS and v)

    def masked_auth(self) -> dict[str, Any]:
        """The auth fields with secret values replaced by "***"."""
        return {k: ("***" if k in SECRET_KEYS and v not in (None, "") else v)
                for k, v in self.auth.items()}

    def keystone_plugin(self) -> Any:
        """A fresh keystoneauth1 plugin for this cloud (the one the config names)."""
        from keystoneauth1 import exceptions as ks_exc
        from keystoneauth1 import loading

        try:
            if self.region is not None:
                plugin = self.region.get_auth()
                if plugin is not None:
                    return plugin
            loader: Any = loading.get_plugin_loader(self.auth_type)
            return loader.load_from_options(**dict(self.auth))
        except (ks_exc.ClientException, TypeError) as exc:
            raise ConfigError(f"cannot build the {self.auth_type} auth plugin: {exc}",
                              path=self.source or None, key=f"clouds.{self.name}") from None

    def ssl_verify(self) -> ssl.SSLContext | bool:
        """The TLS settings for httpx: False, or an SSLContext with the CA bundle and client
        certificate (httpx 0.28 takes both through `verify=`; `cert=` is deprecated)."""
        if self.verify is False and not self.cert:
            return False
        try:
            if isinstance(self.verify, str):
                ctx = ssl.create_default_context(cafile=self.verify)
            else:
                import certifi

                ctx = ssl.create_default_context(cafile=certifi.where())
            if self.verify is False:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if self.cert:
                ctx.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            what = "cert/key" if self.cert else "cacert"
            raise ConfigError(f"cannot load TLS files: {exc}", path=self.source or None,
                              key=f"clouds.{self.name}.{what}") from None
        return ctx


def load_cloud_config(cloud: str | None = None, env: Mapping[str, str] | None = None,
                      cwd: Path | None = None, home: Path | None = None,
                      system_dir: Path | None = None) -> CloudConfig:
    """Resolve cloud `cloud` (else `OS_CLOUD`, else the only one) with openstack.config.

    `env` and the directories default to the process's; tests pass them so nothing outside
    leaks in. With `env` given, os.environ is replaced by it while openstack.config reads it
    (it has no other way in).
    """
    files = _search_files(cwd, home, system_dir)
    with _environ(env):
        environ = dict(os.environ)
        _check_files(environ, files)
        return _resolve(cloud, environ, files)


# ---- openstack.config -----------------------------------------------------------------------


def _search_files(cwd: Path | None, home: Path | None, system_dir: Path | None
                  ) -> dict[str, list[str]] | None:
    """openstack.config's search path rooted at the given directories (None: its own)."""
    if cwd is None and home is None and system_dir is None:
        return None
    dirs = [cwd or Path.cwd(), (home or Path.home()) / ".config" / "openstack",
            system_dir or Path("/etc/openstack")]
    return {stem: [str(d / (stem + s)) for d in dirs for s in _SUFFIXES]
            for stem in ("clouds", "secure", "clouds-public")}


@contextlib.contextmanager
def _environ(env: Mapping[str, str] | None) -> Iterator[None]:
    if env is None:
        yield
        return
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _first_existing(explicit: str | None, candidates: list[str]) -> str | None:
    for path in ([explicit] if explicit else []) + candidates:
        if os.path.exists(path):
            return path
    return None


def _check_files(env: Mapping[str, str], files: dict[str, list[str]] | None) -> None:
    """Fail loudly where openstack.config would skip: a missing explicit file, bad YAML."""
    from openstack.config import loader

    for var in ("OS_CLIENT_CONFIG_FILE", "OS_CLIENT_SECURE_FILE"):
        if env.get(var) and not os.path.isfile(env[var]):
            raise ConfigError("file does not exist", path=env[var], key=var)
    for stem, var, default in (("clouds", "OS_CLIENT_CONFIG_FILE", loader.CONFIG_FILES),
                               ("secure", "OS_CLIENT_SECURE_FILE", loader.SECURE_FILES)):
        path = _first_existing(env.get(var), files[stem] if files else list(default))
        if path is None or path.endswith(".json"):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                yaml.safe_load(f)
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", path=path) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise ConfigError(f"invalid YAML: {problem}", path=path,
                              line=mark.line + 1 if mark is not None else None) from None


def _open(files: dict[str, list[str]] | None) -> Any:
    from openstack import exceptions as os_exc
    from openstack.config import OpenStackConfig

    try:
        if files is None:
            return OpenStackConfig()
        return OpenStackConfig(config_files=files["clouds"], secure_files=files["secure"],
                               vendor_files=files["clouds-public"])
    except os_exc.ConfigException as exc:
        raise ConfigError(str(exc)) from None


def _resolve(cloud: str | None, env: Mapping[str, str],
             files: dict[str, list[str]] | None) -> CloudConfig:
    from keystoneauth1 import exceptions as ks_exc
    from openstack import exceptions as os_exc

    occ = _open(files)
    path = occ.config_filename
    names = sorted(str(n) for n in occ.get_cloud_names() if n != "defaults")
    name = cloud or occ.default_cloud
    if name is None or name == "defaults":
        if env.get("RACKSPACE_USERNAME") or env.get("RACKSPACE_API_KEY"):
            return _from_rackspace_env(env)
        if names:
            raise ConfigError("several clouds defined; choose one with --cloud or OS_CLOUD: "
                              + ", ".join(names), path=path, key="clouds")
        raise ConfigError("no cloud configured: set OS_CLOUD with a clouds.yaml, or OS_AUTH_URL "
                          "and friends, or RACKSPACE_USERNAME/RACKSPACE_API_KEY")
    is_env = name == occ.envvar_key
    source = "environment" if is_env else (path or "")
    if name not in occ.get_cloud_names():
        known = ", ".join(names) or "none"
        raise ConfigError(f"no such cloud (defined: {known})",
                          path=path or "no clouds.yaml found", key=f"clouds.{name}")

    def where(key: str) -> str:
        if is_env:
            return "OS_" + key.rsplit(".", 1)[-1].upper()
        return f"clouds.{name}.{key}"

    try:
        raw = occ.get_one(name, validate=False)
    except os_exc.ConfigException as exc:
        raise ConfigError(str(exc), path=source, key=f"clouds.{name}") from None
    auth_type = str(raw.config.get("auth_type") or "password")
    _require(auth_type, raw.config, source, where)
    _check_interface(str(raw.config.get("interface") or "public"), source, where)
    if auth_type in RACKSPACE_AUTH_TYPES:
        return _build(name, auth_type, raw, source)
    try:
        region = occ.get_one(name)
    except ks_exc.NoMatchingPlugin:
        raise ConfigError(f"unsupported auth type {auth_type!r}", path=source,
                          key=where("auth_type")) from None
    except ks_exc.MissingRequiredOptions as exc:
        missing = ", ".join(o.dest for o in exc.options)
        raise ConfigError(f"is required for auth type {auth_type}", path=source,
                          key=where(f"auth.{missing}")) from None
    except (ks_exc.ClientException, os_exc.ConfigException, TypeError) as exc:
        # TypeError: keystoneauth passes unknown auth keys straight to the plugin class.
        raise ConfigError(f"auth type {auth_type}: {exc}", path=source,
                          key=where("auth")) from None
    return _build(name, auth_type, region, source)


def _present(config: Mapping[str, Any], key: str) -> bool:
    auth = config.get("auth") or {}
    return any(m.get(k) not in (None, "") for m in (auth, config)
               for k in (key, key.replace("_", "-")))


def _require(auth_type: str, config: Mapping[str, Any], source: str, where: Any) -> None:
    for options in _REQUIRED.get(auth_type, (("auth_url",),)):
        if options == _PROJECT and not any(_present(config, k) for k in options):
            raise ConfigError(f"is required for auth type {auth_type}: a project-scoped token "
                              "is needed to get a service catalog", path=source,
                              key=where("auth.project_name"))
        if not any(_present(config, k) for k in options):
            raise ConfigError(f"is required for auth type {auth_type}", path=source,
                              key=where("auth." + options[0]))
    if auth_type == "v3applicationcredential" and \
            not _present(config, "application_credential_id") and \
            not any(_present(config, k) for k in _USER):
        raise ConfigError("is required with application_credential_name", path=source,
                          key=where("auth.username"))


def _check_interface(interface: str, source: str, where: Any) -> None:
    if _interface(interface) not in INTERFACES:
        raise ConfigError(f"must be one of {', '.join(INTERFACES)}", path=source,
                          key=where("interface"))


def _interface(value: str) -> str:
    """Keystone v3 spelling: `internalURL` (legacy endpoint_type) is `internal`."""
    value = value.strip().lower()
    return value[:-3] if value.endswith("url") else value


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _build(name: str, auth_type: str, region: Any, source: str) -> CloudConfig:
    """A CloudConfig from an openstack.config CloudRegion."""
    config = region.config
    verify, cert = region.get_requests_verify_args()
    cert_file, key_file = (cert if isinstance(cert, tuple) else (cert, None))
    rax = auth_type in RACKSPACE_AUTH_TYPES
    return CloudConfig(
        name=name, auth_type=auth_type, auth=dict(config.get("auth") or {}),
        region_name=_text(region.get_region_name()),
        interface=_interface(str(region.get_interface() or "public")),
        verify=verify if isinstance(verify, str) else bool(verify),
        cert=_text(cert_file), key=_text(key_file),
        compute_endpoint_override=_text(config.get("compute_endpoint_override")),
        image_endpoint_override=_text(config.get("image_endpoint_override")),
        compute_service_name=_text(config.get("compute_service_name"))
        or (RACKSPACE_COMPUTE_NAME if rax else None),
        image_service_name=_text(config.get("image_service_name"))
        or (RACKSPACE_IMAGE_NAME if rax else None),
        source=source, region=None if rax else region)


def _from_rackspace_env(env: Mapping[str, str]) -> CloudConfig:
    for var in ("RACKSPACE_USERNAME", "RACKSPACE_API_KEY"):
        if not env.get(var):
            raise ConfigError("must be set for Rackspace", key=var)
    return CloudConfig(
        name="rackspace", auth_type="rackspace_apikey",
        auth={"auth_url": env.get("RACKSPACE_AUTH_URL") or RACKSPACE_IDENTITY,
              "username": env["RACKSPACE_USERNAME"], "api_key": env["RACKSPACE_API_KEY"]},
        region_name=env.get("RACKSPACE_REGION") or None,
        compute_service_name=RACKSPACE_COMPUTE_NAME, image_service_name=RACKSPACE_IMAGE_NAME,
        source="environment")
