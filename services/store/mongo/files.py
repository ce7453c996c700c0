"""``GridFSFileStore``: files in MongoDB GridFS (the cluster), bucket ``files`` of the chatmq database.

The bytes are GridFS chunks (``files.chunks``); the record is the GridFS file document
(``files.files``: ``_id`` the file id, ``length``, ``uploadDate``) with the rest in its ``metadata``.
Sending a file adds its conversation with ``$addToSet`` and sets ``metadata.referenced``; the
collector's query (unreferenced and older than a day) runs once an hour and scans the files
collection on FerretDB (which evaluates it in Go), so it is kept off every hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from gridfs.asynchronous import AsyncGridFSBucket
from gridfs.errors import NoFile
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from chatmq.core.errors import StoreError
from chatmq.services.store.files import FileInfo, FileStore, thumbnail_id
from chatmq.services.store.mongo.base import _redact, mongo_errors

Doc = dict[str, Any]
BUCKET = "files"
_CHUNK = 255 * 1024  # GridFS's chunk size


class GridFSFileStore(FileStore):
    def __init__(self, url: str, database: str = "chatmq", *, timeout_ms: int = 10_000) -> None:
        self._url, self._database, self._timeout_ms = url, database, timeout_ms
        self._client: AsyncMongoClient[Doc] | None = None
        self._db: AsyncDatabase[Doc] | None = None
        self._bucket: AsyncGridFSBucket | None = None

    async def start(self) -> None:
        if self._client is not None:
            return
        try:
            client: AsyncMongoClient[Doc] = AsyncMongoClient(
                self._url, w="majority", journal=True, serverSelectionTimeoutMS=self._timeout_ms,
                connectTimeoutMS=self._timeout_ms, appname="chatmq-files")
            await client.admin.command("ping")
        except (PyMongoError, ValueError, TypeError) as exc:
            raise StoreError(f"cannot reach MongoDB at {_redact(self._url)}: {exc}") from exc
        self._client, self._db = client, client[self._database]
        self._bucket = AsyncGridFSBucket(self._db, bucket_name=BUCKET)

    async def stop(self) -> None:
        client, self._client, self._db, self._bucket = self._client, None, None, None
        if client is not None:
            await client.close()

    async def ping(self) -> None:
        with mongo_errors():
            await self._database_().command("ping")

    def _database_(self) -> AsyncDatabase[Doc]:
        if self._db is None:
            raise StoreError("the file store is not started")
        return self._db

    def _gridfs(self) -> AsyncGridFSBucket:
        if self._bucket is None:
            raise StoreError("the file store is not started")
        return self._bucket

    async def put(self, info: FileInfo, source: Path) -> None:
        meta = {"owner": info.owner, "content_type": info.content_type, "sha256": info.sha256,
                "created_at": info.created_at, "thumbnail": info.thumbnail, "parent": info.parent,
                "conversations": list(info.conversations), "referenced": bool(info.conversations)}
        with mongo_errors():
            stream = self._gridfs().open_upload_stream_with_id(info.file_id, info.file_id, metadata=meta)
            try:
                with source.open("rb") as fh:  # read in a thread: the event loop never waits on the disk
                    while chunk := await asyncio.to_thread(fh.read, _CHUNK):
                        await stream.write(chunk)
            except BaseException:
                await stream.abort()
                raise
            await stream.close()

    async def info(self, file_id: str) -> FileInfo | None:
        with mongo_errors():
            doc = await self._database_()[f"{BUCKET}.files"].find_one({"_id": file_id})
        if doc is None:
            return None
        meta = doc.get("metadata") or {}
        return FileInfo(file_id, str(meta["owner"]), int(doc["length"]), str(meta["content_type"]),
                        str(meta["sha256"]), int(meta["created_at"]), meta.get("thumbnail"), meta.get("parent"),
                        tuple(meta.get("conversations") or ()))

    async def read(self, file_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        with mongo_errors():
            try:
                stream = await self._gridfs().open_download_stream(file_id)
            except NoFile:  # a PyMongoError: caught before mongo_errors makes it a StoreError
                return
            await stream.seek(start)
        left = end - start
        try:
            while left > 0:
                with mongo_errors():
                    chunk = await stream.readchunk()
                if not chunk:
                    break
                chunk = chunk[:left]
                left -= len(chunk)
                yield chunk
        finally:
            await stream.close()

    async def add_conversation(self, file_id: str, conversation: str) -> None:
        with mongo_errors():
            await self._database_()[f"{BUCKET}.files"].update_one(
                {"_id": file_id},
                {"$addToSet": {"metadata.conversations": conversation}, "$set": {"metadata.referenced": True}})

    async def unreferenced(self, created_before: int) -> list[str]:
        with mongo_errors():
            cursor = self._database_()[f"{BUCKET}.files"].find(
                {"metadata.referenced": False, "metadata.parent": None, "metadata.created_at": {"$lt": created_before}},
                projection={"_id": 1})
            return sorted(str(doc["_id"]) for doc in await cursor.to_list())

    async def delete(self, file_id: str) -> None:
        for fid in (thumbnail_id(file_id), file_id):
            with mongo_errors(), contextlib.suppress(NoFile):
                await self._gridfs().delete(fid)
