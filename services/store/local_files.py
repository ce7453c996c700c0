"""``LocalFileStore``: files in a folder (embedded mode), ``<file_id>.bin`` beside ``<file_id>.json``.

The record is written after the bytes and replaced atomically (``os.replace``), so a file is either
whole with its record or unknown (a crash may leave an orphan ``.bin``, removed by the next ``delete``
of that id or by hand). Disk work runs in threads; records change under one lock (one process owns
the folder).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec

from chatmq.core.errors import StoreError
from chatmq.services.store.files import FILE_ID, FileInfo, FileStore, thumbnail_id

_CHUNK = 256 * 1024


class LocalFileStore(FileStore):
    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        try:
            await asyncio.to_thread(self._folder.mkdir, parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StoreError(f"cannot create the files folder {self._folder}: {exc}") from exc

    async def stop(self) -> None:
        return None

    async def ping(self) -> None:
        if not self._folder.is_dir():
            raise StoreError(f"the files folder {self._folder} is missing")

    def _paths(self, file_id: str) -> tuple[Path, Path]:
        if not FILE_ID.match(file_id):
            raise ValueError(f"not a file id: {file_id!r}")
        return self._folder / f"{file_id}.bin", self._folder / f"{file_id}.json"

    def _write_info(self, info: FileInfo) -> None:
        _, meta = self._paths(info.file_id)
        tmp = meta.with_suffix(".json.tmp")
        tmp.write_bytes(msgspec.json.encode(info))
        os.replace(tmp, meta)

    def _read_info(self, file_id: str) -> FileInfo | None:
        if not FILE_ID.match(file_id):
            return None
        _, meta = self._paths(file_id)
        try:
            return msgspec.json.decode(meta.read_bytes(), type=FileInfo)
        except FileNotFoundError:
            return None

    async def put(self, info: FileInfo, source: Path) -> None:
        data, _ = self._paths(info.file_id)

        def put() -> None:
            shutil.copyfile(source, data)
            self._write_info(info)

        try:
            async with self._lock:
                await asyncio.to_thread(put)
        except OSError as exc:
            raise StoreError(f"cannot store file {info.file_id}: {exc}") from exc

    async def info(self, file_id: str) -> FileInfo | None:
        try:
            return await asyncio.to_thread(self._read_info, file_id)
        except (OSError, msgspec.DecodeError) as exc:
            raise StoreError(f"cannot read the record of file {file_id}: {exc}") from exc

    async def read(self, file_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        data, _ = self._paths(file_id)
        try:
            fh = await asyncio.to_thread(data.open, "rb")
        except OSError as exc:
            raise StoreError(f"cannot open file {file_id}: {exc}") from exc
        try:
            await asyncio.to_thread(fh.seek, start)
            left = end - start
            while left > 0:
                chunk = await asyncio.to_thread(fh.read, min(_CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk
        finally:
            fh.close()

    async def add_conversation(self, file_id: str, conversation: str) -> None:
        async with self._lock:
            info = await self.info(file_id)
            if info is None or conversation in info.conversations:
                return
            try:
                await asyncio.to_thread(self._write_info, info.with_conversation(conversation))
            except OSError as exc:
                raise StoreError(f"cannot update the record of file {file_id}: {exc}") from exc

    async def unreferenced(self, created_before: int) -> list[str]:
        def scan() -> list[str]:
            found = []
            for meta in self._folder.glob("*.json"):
                info = self._read_info(meta.stem)
                if (info is not None and info.parent is None and not info.conversations
                        and info.created_at < created_before):
                    found.append(info.file_id)
            return sorted(found)

        try:
            return await asyncio.to_thread(scan)
        except (OSError, msgspec.DecodeError) as exc:
            raise StoreError(f"cannot list the files folder: {exc}") from exc

    async def delete(self, file_id: str) -> None:
        def remove() -> None:
            for fid in (thumbnail_id(file_id), file_id):
                for path in reversed(self._paths(fid)):  # the record first: then it is unknown
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()

        async with self._lock:
            try:
                await asyncio.to_thread(remove)
            except OSError as exc:
                raise StoreError(f"cannot delete file {file_id}: {exc}") from exc
