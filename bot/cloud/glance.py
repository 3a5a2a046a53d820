"""Glance v2: image documents (pure parsing) and the image calls of the cloud client.

A Glance that knows the `in:` operator (Images API 2.5+) is asked for many images at once; an
older one (Rackspace Cloud Images) is asked for the project's images and filtered here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from bot.cloud.edge import CloudEdge, error_for, reads_cloud
from bot.cloud.models import Image
from bot.errors import Ambiguous, ImageProtected, NotFound

log = logging.getLogger("bot.cloud")

IMAGE_PAGE = 200
MAX_URL = 8000  # stay under the common 8 KB request-line limit (eventlet, Apache, nginx)
PER_IMAGE_GETS = 8  # without `in:`, up to this many images are looked at one GET each
# Both Glance v2 spellings of "newest first": `sort_key`/`sort_dir` works on every Glance v2
# (Rackspace Cloud Images documents only these); `sort=created_at:desc` is newer and an older
# Glance reads an unknown parameter as a filter (docs-cloud-images get-list-images-images.rst).
NEWEST_FIRST = {"sort_key": "created_at", "sort_dir": "desc"}
_GLANCE_CORE = frozenset({
    "id", "name", "status", "size", "created_at", "updated_at", "protected", "visibility",
    "tags", "checksum", "container_format", "disk_format", "min_disk", "min_ram", "owner",
    "self", "file", "schema", "virtual_size", "os_hash_algo", "os_hash_value", "os_hidden",
    "locations", "direct_url", "stores"})


def parse_image(doc: Mapping[str, Any]) -> Image:
    """An Image from a flat Glance v2 image document; extra keys become `properties`."""
    props: dict[str, str] = {}
    for key, value in doc.items():
        if key in _GLANCE_CORE or value is None or isinstance(value, dict | list):
            continue
        props[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    size = doc.get("size")
    floors = {k: v for k in ("min_disk", "min_ram")
              if isinstance(v := doc.get(k), int) and not isinstance(v, bool) and v > 0}
    return Image(id=str(doc["id"]), name=str(doc.get("name") or ""),
                 status=str(doc.get("status") or "").lower(),
                 size=size if isinstance(size, int) else None,
                 created_at=str(doc.get("created_at") or ""),
                 updated_at=str(doc.get("updated_at") or ""),
                 protected=bool(doc.get("protected")),
                 visibility=str(doc.get("visibility") or "private"), properties=props,
                 **floors)


class GlanceCalls(CloudEdge):
    """The image half of `CloudClient`."""

    def _init_state(self) -> None:
        super()._init_state()
        self._glance_in: bool | None = None  # does this Glance know `id=in:`? (probed once)

    @reads_cloud
    async def get_image(self, image_id: str) -> Image:
        """One image by id (`NotFound` if absent)."""
        resp = await self._call("image", "GET", f"/images/{quote(image_id, safe='')}")
        if resp.status_code != 200:
            raise error_for(resp, "image", image_id)
        return parse_image(resp.json())

    def _image_docs(self, params: Mapping[str, str]) -> AsyncIterator[Any]:
        """Glance listing pages (the JSON documents), following `next` until it ends or
        repeats; the caller may stop early."""
        query = dict(params)
        query.setdefault("limit", str(IMAGE_PAGE))

        async def fetch(page: dict[str, str]) -> httpx.Response:
            return await self._call("image", "GET", "/images", params=page)

        return self._pages(fetch, query, lambda doc: doc.get("next"), "image")

    async def _image_pages(self, params: dict[str, str]) -> list[Image]:
        out: list[Image] = []
        async for doc in self._image_docs(params):
            out.extend(parse_image(d) for d in doc["images"])  # (as for servers)
        return out

    @reads_cloud
    async def list_images(self, server_id: str | None = None,
                          properties: Mapping[str, str] | None = None) -> list[Image]:
        """Images, newest first, of `server_id` (instance_uuid) and with these properties.

        The properties are checked on every answer, so a Glance that ignores a property filter
        (and lists everything) cannot make us act on another image. An older Glance (no `in:`,
        like Rackspace Cloud Images) documents filters on image attributes only: there we list
        the project's own images (`owner`) and filter here, so a property filter it does not
        honour cannot hide an image either."""
        wanted = {str(k): str(v) for k, v in (properties or {}).items()}
        if server_id is not None:
            wanted["instance_uuid"] = server_id
        params: dict[str, str] = dict(NEWEST_FIRST)
        if await self._supports_in():
            params.update(wanted)
        else:
            owner = (await self._auth.session()).project_id
            if owner:
                params["owner"] = owner
        found = await self._image_pages(params)
        return [im for im in found
                if all(im.properties.get(k) == v for k, v in wanted.items())]

    @reads_cloud
    async def find_images_by_metadata(self, key: str, value: str) -> list[Image]:
        """Images carrying property `key` = `value` (reconciling a job after a crash); checked
        on our side, see `list_images`."""
        return await self.list_images(properties={key: value})

    async def _supports_in(self) -> bool:
        """Whether this Glance knows the `in:` operator (Images API 2.5+; Rackspace Cloud
        Images does not and compares `id=in:X` literally, answering nothing). Probed once per
        cloud with an id we just saw listed; undecided (False, not remembered) while no image
        is visible at all."""
        if self._glance_in is not None:
            return self._glance_in
        resp = await self._call("image", "GET", "/images", params={**NEWEST_FIRST, "limit": "1"})
        if resp.status_code != 200:
            raise error_for(resp, "image", "list")
        first = [d.get("id") for d in resp.json().get("images") or [] if isinstance(d, dict)]
        if not first or not first[0]:
            return False
        known = str(first[0])
        resp = await self._call("image", "GET", "/images",
                                params={"id": f"in:{known}", "limit": "2"})
        if resp.status_code == 400:  # a Glance that validates filters and refuses `in:`
            self._glance_in = False
        elif resp.status_code != 200:
            raise error_for(resp, "image", "list")
        else:
            self._glance_in = any(isinstance(d, dict) and d.get("id") == known
                                  for d in resp.json().get("images") or [])
        log.info("Glance %s the in: operator", "supports" if self._glance_in else "lacks")
        return self._glance_in

    async def _images_without_in(self, asked: list[str]) -> dict[str, Image]:
        """The asked-for images that exist, without `in:`: one GET each for a few, else the
        project's images newest first until all are seen; an id the listing did not show is
        looked up by GET before anyone calls it vanished (only a 404 is)."""
        images: dict[str, Image] = {}
        missing = set(asked)
        if len(asked) > PER_IMAGE_GETS:
            owner = (await self._auth.session()).project_id
            params = {**NEWEST_FIRST, "limit": "1000", **({"owner": owner} if owner else {})}
            async for doc in self._image_docs(params):
                for d in doc.get("images") or []:
                    if isinstance(d, dict) and d.get("id") in missing:
                        image = parse_image(d)
                        images[image.id] = image
                        missing.discard(image.id)
                if not missing:
                    break
        for image_id in sorted(missing):
            try:
                images[image_id] = await self.get_image(image_id)
            except NotFound:
                pass  # a real 404: vanished
        return images

    @reads_cloud
    async def delete_image(self, image_id: str) -> None:
        """Delete an image; a missing one is `NotFound`. A protected image is refused here,
        before Glance is asked (`ImageProtected`): the bot never deletes one, whoever asks
        (Glance itself answers 403 for it, which is `Forbidden`)."""
        image = await self.get_image(image_id)
        if image.protected:
            raise ImageProtected(image_id, image.name)
        resp = await self._call("image", "DELETE", f"/images/{quote(image_id, safe='')}")
        if resp.status_code not in (200, 204):
            raise error_for(resp, "image", image_id)

    @reads_cloud
    async def patch_image(self, image_id: str, ops: list[dict[str, Any]]) -> Image:
        """Apply JSON-patch operations to an image (`PATCH /v2/images/{id}` with media type
        `application/openstack-images-v2.1-json-patch`, Glance v2 api-ref "Update image":
        `add`/`replace`/`remove` on `/<attribute>`); the updated image."""
        resp = await self._call(
            "image", "PATCH", f"/images/{quote(image_id, safe='')}", json=ops,
            headers={"Content-Type": "application/openstack-images-v2.1-json-patch"})
        if resp.status_code != 200:
            raise error_for(resp, "image", image_id)
        return parse_image(resp.json())

    async def set_protected(self, image_id: str, protected: bool) -> Image:
        """Protect an image from deletion, or lift that (`replace /protected`: a protected
        image cannot be deleted, Glance answers 403, until it is unprotected)."""
        return await self.patch_image(image_id, [{"op": "replace", "path": "/protected",
                                                  "value": protected}])

    async def set_image_property(self, image_id: str, key: str, value: str) -> Image:
        """Set an extra property (`add` replaces an existing one, RFC 6902 4.1)."""
        return await self.patch_image(image_id, [{"op": "add", "path": f"/{key}",
                                                  "value": value}])

    @reads_cloud
    async def find_image(self, ref: str) -> Image:
        """An image by id, else by exact name among the project's images (`NotFound`,
        `Ambiguous` when several share the name)."""
        ref = ref.strip()
        try:
            return await self.get_image(ref)
        except NotFound:
            pass
        owner = (await self._auth.session()).project_id
        found = [im for im in await self._image_pages(
            {**NEWEST_FIRST, "name": ref, **({"owner": owner} if owner else {})})
            if im.name == ref]
        if len(found) > 1:
            raise Ambiguous("image", ref, [(im.id, im.name) for im in found])
        if not found:
            raise NotFound("image", ref)
        return found[0]

    def _chunks(self, ids: list[str], base_len: int) -> list[list[str]]:
        budget = MAX_URL - base_len - 200  # room for the path and the other parameters
        chunks: list[list[str]] = []
        current: list[str] = []
        used = 0
        for image_id in ids:
            cost = len(quote(image_id, safe="")) + 3  # plus an encoded comma
            if current and used + cost > budget:
                chunks.append(current)
                current, used = [], 0
            current.append(image_id)
            used += cost
        if current:
            chunks.append(current)
        return chunks

