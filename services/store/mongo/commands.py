"""MongoDB store: commands for devices, one document per command keyed by ``_id``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError

from chatmq.core.errors import ConflictError
from chatmq.services.store.base import CommandStatus, DeviceCommand
from chatmq.services.store.mongo.base import MongoBase, mongo_errors


def _doc(c: DeviceCommand) -> dict[str, Any]:
    return {"device_id": c.device_id, "name": c.name, "params": json.dumps(c.params), "persistent": c.persistent,
            "status": c.status, "created_at": c.created_at, "expires_at": c.expires_at,
            "result": None if c.result is None else json.dumps(c.result), "error": c.error,
            "requester": c.requester, "client_id": c.client_id}


def _command(d: dict[str, Any]) -> DeviceCommand:
    return DeviceCommand(d["_id"], d["device_id"], d["name"], json.loads(d["params"]), bool(d["persistent"]),
                         d["status"], int(d["created_at"]), int(d["expires_at"]),
                         None if d["result"] is None else json.loads(d["result"]), d["error"], d.get("requester"),
                         d.get("client_id"))


class MongoCommands(MongoBase):
    """``commands`` ``{_id: command_id, device_id, name, params, persistent, status, created_at, expires_at,
    result, error, requester, client_id}`` (params and result as JSON text); ``(device_id, created_at)`` indexed for the
    device's list (``GET /devices/{id}/commands``). Single commands are read and replaced by ``_id``."""

    async def add_command(self, command: DeviceCommand) -> None:
        with mongo_errors():
            try:
                await self._coll("commands").insert_one({"_id": command.command_id, **_doc(command)})
            except DuplicateKeyError as exc:
                raise ConflictError(f"command id {command.command_id} is taken") from exc

    async def get_command(self, command_id: str) -> DeviceCommand | None:
        with mongo_errors():
            doc = await self._coll("commands").find_one({"_id": command_id})
        return None if doc is None else _command(doc)

    async def put_command(self, command: DeviceCommand) -> None:
        with mongo_errors():
            await self._coll("commands").replace_one({"_id": command.command_id}, _doc(command), upsert=True)

    async def device_commands(self, device_id: str, statuses: Sequence[CommandStatus] | None = None,
                              limit: int = 100) -> list[DeviceCommand]:
        query: dict[str, Any] = {"device_id": device_id}
        if statuses is not None:
            query["status"] = {"$in": list(statuses)}
        with mongo_errors():
            cursor = self._coll("commands").find(query).sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            return [_command(d) async for d in cursor.limit(limit)]
