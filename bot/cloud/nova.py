"""Nova: server views (pure parsing) and the compute calls of the cloud client, including
createImage. Microversions: reads ask for 2.47 (flavor embedded), createImage for 2.45; a cloud
that answers 406 to one is asked without it from then on."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import re
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from bot.cloud.edge import CloudEdge, error_for, fault_message, reads_cloud, request_id_of
from bot.cloud.models import Flavor, Server
from bot.errors import Ambiguous, CloudRejected, CloudUnavailable, NotFound, ServerBusy

log = logging.getLogger("bot.cloud")

CREATE_IMAGE_MICROVERSION = "2.45"  # createImage answers {"image_id": ...}
READ_MICROVERSION = "2.47"  # server views embed the flavor (ephemeral size)
SERVER_PAGE = 1000  # Nova's default max_limit


def _mv_headers(version: str) -> dict[str, str]:
    return {"OpenStack-API-Version": f"compute {version}",
            "X-OpenStack-Nova-API-Version": version}


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def parse_server(doc: Mapping[str, Any]) -> Server:
    """A Server from a Nova server view (any microversion)."""
    image = doc.get("image")
    volume_backed = not image  # "" (or missing) when booted from a volume
    volumes = [str(v["id"]) for v in doc.get("os-extended-volumes:volumes_attached") or []
               if isinstance(v, Mapping) and v.get("id")]
    # For a volume-backed server the first attached volume is its root disk.
    data = volumes[1:] if volume_backed else volumes
    disks = [f"volume {v}" for v in data]
    flavor = doc.get("flavor") or {}
    ephemeral = flavor.get("ephemeral") if isinstance(flavor, Mapping) else None
    if isinstance(ephemeral, int) and not isinstance(ephemeral, bool) and ephemeral > 0:
        disks.append(f"ephemeral disk {ephemeral} GB")
    power = doc.get("OS-EXT-STS:power_state")
    meta = doc.get("metadata")
    fault = doc.get("fault")
    return Server(
        id=str(doc["id"]), name=str(doc.get("name") or ""), status=str(doc.get("status") or ""),
        vm_state=doc.get("OS-EXT-STS:vm_state"), task_state=doc.get("OS-EXT-STS:task_state"),
        power_state=power if isinstance(power, int) else None,
        volume_backed=volume_backed, data_disks=tuple(disks),
        flavor=str(flavor.get("original_name") or flavor.get("id") or "")
        if isinstance(flavor, Mapping) else "",
        updated=str(doc.get("updated") or ""),
        metadata={str(k): str(v) for k, v in meta.items()} if isinstance(meta, Mapping) else {},
        fault=str(fault.get("message") or "") or None if isinstance(fault, Mapping) else None)


def reports_volumes(doc: Mapping[str, Any]) -> bool:
    """Whether a server view lists its volumes (`os-extended-volumes`); Rackspace's does not,
    so its data disks come from `os-volume_attachments`."""
    return "os-extended-volumes:volumes_attached" in doc


def with_attachments(server: Server, doc: Any, flavor_disks: Sequence[str] = ()) -> Server:
    """`server` with the volumes of an `os-volume_attachments` answer as data disks (the boot
    volume of a volume-backed server, device `/dev/[x]vda`, is not a data disk)."""
    items = doc.get("volumeAttachments") if isinstance(doc, Mapping) else None
    if not isinstance(items, list):
        return server
    volumes = [(str(a.get("device") or ""), str(a.get("volumeId") or a.get("id")))
               for a in items if isinstance(a, Mapping) and (a.get("volumeId") or a.get("id"))]
    if server.volume_backed and volumes:
        roots = [v for v in volumes if re.fullmatch(r"/dev/(x?v|s)da", v[0])]
        volumes.remove(roots[0] if roots else volumes[0])
    disks = [f"volume {vid}" for _, vid in volumes]
    disks += [d for d in server.data_disks if not d.startswith("volume ")]
    return dataclasses.replace(server, data_disks=tuple(disks))


def match_server(ref: str, servers: Sequence[Server]) -> Server:
    """The one server named exactly `ref`; `Ambiguous` or `NotFound` with close names."""
    exact = [s for s in servers if s.name == ref]
    if len(exact) == 1:
        return exact[0]
    if exact:
        raise Ambiguous("server", ref, [(s.id, s.name) for s in exact])
    names = sorted({s.name for s in servers})
    folded = [n for n in names if n.lower() == ref.lower()]
    close = difflib.get_close_matches(ref, names, n=3, cutoff=0.6)
    suggestions = folded + [n for n in close if n not in folded]
    raise NotFound("server", ref, suggestions[:3])


def _servers_next(doc: Any) -> str | None:
    """The `next` link of a Nova listing page (`servers_links`)."""
    return next((ln.get("href") for ln in doc.get("servers_links") or []
                 if ln.get("rel") == "next"), None)


def busy_state(message: str) -> str | None:
    """The task state in Nova's 409 message (`... while it is in task_state image_uploading`)."""
    m = re.search(r"task_state (\w+)", message)
    return m.group(1) if m else None


class NovaCalls(CloudEdge):
    """The compute half of `CloudClient`."""

    def _init_state(self) -> None:
        super()._init_state()
        self._mv_refused: set[str] = set()  # microversions this cloud answered 406 to
        self._flavors: dict[str, int] = {}  # flavor id -> ephemeral GB (views without it)

    async def _compute(self, method: str, path: str, *, version: str,
                       params: Mapping[str, str] | None = None, json: Any = None,
                       idempotent: bool = True) -> httpx.Response:
        """A Nova call at `version`, falling back to no microversion after a 406."""
        if version not in self._mv_refused:
            resp = await self._call("compute", method, path, params=params, json=json,
                                    headers=_mv_headers(version), idempotent=idempotent)
            if resp.status_code != 406:
                return resp
            log.info("compute refused microversion %s; continuing without", version)
            self._mv_refused.add(version)
        return await self._call("compute", method, path, params=params, json=json,
                                idempotent=idempotent)

    @reads_cloud
    async def get_server(self, server_id: str, *, disks: bool = True) -> Server:
        """One server by id (`NotFound` if absent); `disks=False` skips the extra look-ups of
        data disks a Rackspace view needs (observation wants task states only)."""
        resp = await self._compute("GET", f"/servers/{quote(server_id, safe='')}",
                                   version=READ_MICROVERSION)
        if resp.status_code != 200:
            raise error_for(resp, "server", server_id)
        doc = resp.json()["server"]
        server = parse_server(doc)
        return server if reports_volumes(doc) or not disks else await self._attached(server)

    async def _attached(self, server: Server) -> Server:
        """Data disks from `os-volume_attachments` (Nova api-ref "List volume attachments for
        an instance"; Rackspace Cloud Servers ext-volume-attachments), for server views that
        do not list volumes. Without the extension the server stays as it is."""
        resp = await self._call("compute", "GET",
                                f"/servers/{quote(server.id, safe='')}/os-volume_attachments")
        if resp.status_code != 200:
            log.info("no os-volume_attachments for server %s (HTTP %d)", server.id,
                     resp.status_code)
        else:
            server = with_attachments(server, resp.json())
        if server.flavor and not any(d.startswith("ephemeral ") for d in server.data_disks):
            # Such a view names the flavor by id only; its ephemeral disk (Rackspace's "data
            # disks" of I/O flavors) is in the flavor (`OS-FLV-EXT-DATA:ephemeral`).
            ephemeral = await self._flavor_ephemeral(server.flavor)
            if ephemeral:
                server = dataclasses.replace(server, data_disks=server.data_disks + (
                    f"ephemeral disk {ephemeral} GB",))
        return server

    async def _flavor_ephemeral(self, flavor_id: str) -> int:
        """The ephemeral disk size (GB) of a flavor, 0 when none or unknown; cached."""
        if flavor_id not in self._flavors:
            resp = await self._call("compute", "GET", f"/flavors/{quote(flavor_id, safe='')}")
            doc = resp.json().get("flavor") if resp.status_code == 200 else None
            value = doc.get("OS-FLV-EXT-DATA:ephemeral") if isinstance(doc, dict) else None
            self._flavors[flavor_id] = value if isinstance(value, int) and \
                not isinstance(value, bool) and value > 0 else 0
        return self._flavors[flavor_id]

    async def _server_pages(self, params: dict[str, str], limit: int | None
                            ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        page = SERVER_PAGE if limit is None else max(1, min(limit, SERVER_PAGE))

        async def fetch(query: dict[str, str]) -> httpx.Response:
            return await self._compute("GET", "/servers/detail", version=READ_MICROVERSION,
                                       params=query)

        async for doc in self._pages(fetch, {**params, "limit": str(page)}, _servers_next,
                                     "server"):
            out.extend(doc["servers"])  # always there; a listing without it is garbage
            if limit is not None and len(out) >= limit:
                return out[:limit]
        return out

    @reads_cloud
    async def list_servers(self, limit: int | None = None) -> list[Server]:
        """Servers, newest first, following `servers_links` (at most `limit`)."""
        return [parse_server(d) for d in await self._server_pages({}, limit)]

    async def _list_servers_marking(self) -> tuple[list[Server], set[str]]:
        """All servers, and the ids whose view did not list volumes."""
        docs = await self._server_pages({}, None)
        return [parse_server(d) for d in docs], {str(d["id"]) for d in docs
                                                 if not reports_volumes(d)}

    @reads_cloud
    async def find_server(self, ref: str) -> Server:
        """A server by UUID or exact name; `Ambiguous` or `NotFound` with close names."""
        ref = ref.strip()
        if _is_uuid(ref):
            try:
                return await self.get_server(ref)
            except NotFound:
                pass  # a server may be named like a UUID; try names below
        # Nova's `name` filter is a regex: list and compare exactly on our side.
        servers, bare = await self._list_servers_marking()
        found = match_server(ref, servers)
        return await self._attached(found) if found.id in bare else found

    @reads_cloud
    async def find_servers(self, refs: Collection[str]) -> dict[str, Server | CloudRejected]:
        """Many servers by UUID or exact name with one (paged) listing: for each ref the
        server, or the `Ambiguous`/`NotFound` that `find_server` would raise."""
        servers, bare = await self._list_servers_marking()
        by_id = {s.id: s for s in servers}
        found: dict[str, Server | CloudRejected] = {}
        for ref in refs:
            key = ref.strip()
            if _is_uuid(key) and key.lower() in by_id:
                found[ref] = by_id[key.lower()]
                continue
            try:
                found[ref] = match_server(key, servers)
            except CloudRejected as exc:
                found[ref] = exc
        # Only the few servers asked for cost one more request each (Rackspace views).
        attached: dict[str, Server] = {}
        for ref, server in list(found.items()):
            if isinstance(server, Server) and server.id in bare:
                if server.id not in attached:
                    attached[server.id] = await self._attached(server)
                found[ref] = attached[server.id]
        return found

    @reads_cloud
    async def create_image(self, server_id: str, name: str, metadata: Mapping[str, str]) -> str:
        """Start a snapshot; the new image id. 409 is `ServerBusy` (never retried)."""
        body = {"createImage": {"name": name, "metadata": dict(metadata)}}
        path = f"/servers/{quote(server_id, safe='')}/action"
        resp = await self._compute("POST", path, version=CREATE_IMAGE_MICROVERSION, json=body,
                                   idempotent=False)
        rid = request_id_of(resp)
        if resp.status_code == 409:
            message = fault_message(resp)
            raise ServerBusy(server_id, busy_state(message), message, request_id=rid)
        if resp.status_code not in (200, 202):
            raise error_for(resp, "server", server_id)
        try:
            doc = resp.json()
        except ValueError:
            doc = None
        if isinstance(doc, dict) and doc.get("image_id"):
            return str(doc["image_id"])
        location = resp.headers.get("location")
        if location:
            image_id = urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1]
            if image_id:
                return image_id
        raise CloudUnavailable("createImage was accepted but named no image id",
                               request_id=rid)


    # --- throw-away servers (restore tests, bot.imaging.verify) ---------------------------

    @reads_cloud
    async def list_flavors(self) -> list[Flavor]:
        """Every flavor with its RAM and disk (`GET /flavors/detail`, Nova api-ref "List
        Flavors With Details")."""
        resp = await self._call("compute", "GET", "/flavors/detail")
        if resp.status_code != 200:
            raise error_for(resp, "flavor", "list")
        return [Flavor(id=str(d["id"]), name=str(d.get("name") or d["id"]),
                       ram=int(d.get("ram") or 0), disk=int(d.get("disk") or 0),
                       vcpus=int(d.get("vcpus") or 1))
                for d in resp.json()["flavors"]]

    @reads_cloud
    async def server_networks(self, server_id: str) -> list[str] | None:
        """The network ids a server is plugged into (`GET /servers/{id}/os-interface`, Nova
        api-ref "List Port Interfaces": `interfaceAttachments[].net_id`); None when unknown
        (the server is gone, or the cloud has no such extension, as Rackspace's Cloud
        Servers, which has os-virtual-interfacesv2 instead)."""
        resp = await self._call("compute", "GET",
                                f"/servers/{quote(server_id, safe='')}/os-interface")
        if resp.status_code in (404, 501):
            return None
        if resp.status_code != 200:
            raise error_for(resp, "server", server_id)
        ids = [str(a["net_id"]) for a in resp.json()["interfaceAttachments"]
               if isinstance(a, Mapping) and a.get("net_id")]
        return list(dict.fromkeys(ids)) or None

    @reads_cloud
    async def boot_server(self, name: str, image_id: str, flavor_id: str, *,
                          networks: Sequence[str] | None,
                          metadata: Mapping[str, str]) -> str:
        """Boot a server from an image; its id (`POST /servers` answers 202 with the id,
        Nova api-ref "Create Server"). Asked without a microversion (2.1): `networks` may
        then be left out (None: the cloud's default network), where 2.37+ requires it. Never
        retried blindly (a lost answer may have booted a server: the caller finds it by
        metadata)."""
        server: dict[str, Any] = {"name": name, "imageRef": image_id, "flavorRef": flavor_id,
                                  "metadata": dict(metadata)}
        if networks:
            server["networks"] = [{"uuid": n} for n in networks]
        resp = await self._call("compute", "POST", "/servers", json={"server": server},
                                idempotent=False)
        if resp.status_code != 202:
            raise error_for(resp, "image", image_id)
        return str(resp.json()["server"]["id"])

    @reads_cloud
    async def delete_server(self, server_id: str) -> None:
        """Delete a server (`DELETE /servers/{id}`: 204, the server goes away shortly after);
        `NotFound` when it is already gone."""
        resp = await self._call("compute", "DELETE", f"/servers/{quote(server_id, safe='')}")
        if resp.status_code not in (202, 204):
            raise error_for(resp, "server", server_id)

    @reads_cloud
    async def console_output(self, server_id: str, length: int = 200) -> str | None:
        """The tail of a server's console log (`os-getConsoleOutput`, Nova api-ref "Show
        Console Output": 200 `{"output": ...}`; nova console_output.py answers 409 while the
        instance has no host yet and 501 where the driver keeps no console log). "" while it
        is not ready; None when the cloud has no console log (Rackspace answers 501)."""
        resp = await self._call("compute", "POST",
                                f"/servers/{quote(server_id, safe='')}/action",
                                json={"os-getConsoleOutput": {"length": length}})
        if resp.status_code == 501:
            return None
        if resp.status_code == 409:
            return ""
        if resp.status_code != 200:
            raise error_for(resp, "server", server_id)
        return str(resp.json()["output"] or "")
