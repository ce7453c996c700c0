"""Files sent in messages: the record of an upload and the ``FileStore`` interface.

An upload is stored whole under a new ``file_id`` with its ``FileInfo`` (who uploaded it, size, sniffed
content type, SHA-256, the id of its thumbnail). A message that names it in its body
(``"body": {"file": "<file_id>", ...}``) adds its conversation to ``FileInfo.conversations``; the file
may be read by its uploader and by the members of those conversations (``may_read``). Uploads that
no message named are collected after a while (``FileCollector``). A thumbnail is a file of its own
whose ``parent`` is the image: it goes with its parent and is read under the parent's rules.

Two implementations: ``LocalFileStore`` (a folder, embedded mode) and ``GridFSFileStore`` (MongoDB
GridFS, the cluster).
"""

from __future__ import annotations

import abc
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

from chatmq.core.service import Service
from chatmq.services.store.base import GroupStore

FILE_ID = re.compile(r"^f[0-9a-f]{32}(-thumb)?$")


def new_file_id() -> str:
    """A fresh, unguessable file id (128 random bits)."""
    return f"f{secrets.token_hex(16)}"


def thumbnail_id(file_id: str) -> str:
    return f"{file_id}-thumb"


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What is known of a stored file (``created_at`` in ms)."""

    file_id: str
    owner: str
    size: int
    content_type: str
    sha256: str
    created_at: int
    thumbnail: str | None = None
    parent: str | None = None
    conversations: tuple[str, ...] = ()

    def with_conversation(self, conversation: str) -> FileInfo:
        if conversation in self.conversations:
            return self
        return replace(self, conversations=(*self.conversations, conversation))


class FileStore(Service):
    """Stored files; every method is a coroutine and raises ``StoreError`` when the backend fails."""

    @abc.abstractmethod
    async def put(self, info: FileInfo, source: Path) -> None:
        """Store the bytes of the local file ``source`` (``info.size`` of them) as ``info.file_id``."""

    @abc.abstractmethod
    async def info(self, file_id: str) -> FileInfo | None:
        """The file's record, ``None`` when there is no such file."""

    @abc.abstractmethod
    def read(self, file_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``start`` to ``end`` (exclusive) of a stored file, in chunks."""

    @abc.abstractmethod
    async def add_conversation(self, file_id: str, conversation: str) -> None:
        """Record that the file was sent in ``conversation`` (nothing when it is no longer stored)."""

    @abc.abstractmethod
    async def unreferenced(self, created_before: int) -> list[str]:
        """Uploads (not thumbnails) created before ``created_before`` (ms) that no message named."""

    @abc.abstractmethod
    async def delete(self, file_id: str) -> None:
        """Remove the file and its thumbnail (nothing when it is not stored)."""


async def may_read(info: FileInfo, user_id: str, groups: GroupStore) -> bool:
    """Whether ``user_id`` may read the file: its uploader, or a member of a conversation it was sent in
    (a 1:1 conversation ``a:b`` is its two users; a group, its members now)."""
    if info.owner == user_id:
        return True
    for conversation in info.conversations:
        if ":" in conversation:
            if user_id in conversation.split(":"):
                return True
            continue
        group = await groups.get_group(conversation)
        if group is not None and group.is_member(user_id):
            return True
    return False
