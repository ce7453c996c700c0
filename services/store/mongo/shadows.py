"""MongoDB store: device shadows. Each version of a shadow is a document inserted once, keyed by
``_id`` = (device, version): that insert against the unique ``_id`` decides which writer makes a
version, which holds across processes on FerretDB too (whose conditional updates are not atomic; see
the package docstring). A per-device document keyed by the device id points at the newest version."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from pymongo.errors import DuplicateKeyError

from chatmq.services.store.base import Shadow
from chatmq.services.store.mongo.base import MongoBase, mongo_errors, pair_key

#: How many versions of a shadow keep their content behind the newest (for readers whose pointer lags).
KEEP_VERSIONS = 16


def version_key(device_id: str, version: int) -> str:
    """The ``_id`` of version ``version`` of ``device_id``'s shadow in ``shadow_versions``."""
    return pair_key(device_id, str(version))


def _doc(shadow: Shadow) -> dict[str, Any]:
    return {"desired": json.dumps(shadow.desired), "reported": json.dumps(shadow.reported),
            "version": shadow.version, "updated_at": shadow.updated_at}


def _shadow(device_id: str, doc: dict[str, Any]) -> Shadow:
    return Shadow(device_id, json.loads(doc["desired"]), json.loads(doc["reported"]), int(doc["version"]),
                  int(doc["updated_at"]))


class MongoShadows(MongoBase):
    """``shadow_versions`` ``{_id: version_key(device, n), desired, reported (JSON text), version, updated_at}``:
    version ``n`` of a shadow, inserted by the one writer that made it (a duplicate key: another writer
    came first, and the caller's compare-and-swap fails). A version ``KEEP_VERSIONS`` behind the newest
    is emptied to ``{_id}``, a tombstone kept so that a writer that read a shadow that old still loses.

    ``shadows`` ``{_id: device_id, <the same fields>}``: a copy of the newest version, written after its
    insert and never moved back where updates are atomic (MongoDB). It may lag behind (a writer between
    its insert and its copy, or on FerretDB a copy that raced a newer one), so a read starts there and
    walks forward by ``_id`` through the versions until one is missing: two ``_id`` lookups per read,
    whatever the collection's size. Only ``_id`` lookups, inserts and replaces: no index is needed.
    """

    async def get_shadow(self, device_id: str) -> Shadow:
        with mongo_errors():
            doc = await self._coll("shadows").find_one({"_id": device_id})
            shadow = Shadow(device_id) if doc is None else _shadow(device_id, doc)
            seen, moved = shadow.version, False
            while (newer := await self._coll("shadow_versions").find_one(
                    {"_id": version_key(device_id, seen + 1)})) is not None:
                seen += 1
                if "version" in newer:  # not a tombstone
                    shadow, moved = _shadow(device_id, newer), True
            if moved:
                await self._point(shadow)
        return shadow

    async def swap_shadow(self, shadow: Shadow) -> bool:
        versions = self._coll("shadow_versions")
        with mongo_errors():
            try:
                await versions.insert_one({"_id": version_key(shadow.device_id, shadow.version), **_doc(shadow)})
            except DuplicateKeyError:
                return False
            await self._point(shadow)
            if shadow.version > KEEP_VERSIONS:
                await versions.replace_one({"_id": version_key(shadow.device_id, shadow.version - KEEP_VERSIONS)}, {})
        return True

    async def _point(self, shadow: Shadow) -> None:
        """Copy ``shadow`` to the device's ``shadows`` document unless that holds a newer version."""
        with contextlib.suppress(DuplicateKeyError):  # the document holds this version or a newer one
            await self._coll("shadows").replace_one({"_id": shadow.device_id, "version": {"$lt": shadow.version}},
                                                    _doc(shadow), upsert=True)
