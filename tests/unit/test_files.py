"""Files: the two ``FileStore`` implementations (a folder; GridFS on the cluster's MongoDB), the collector of
unreferenced uploads (with an injected clock), what an upload becomes (sniffing, thumbnails, bombs), Range
headers and file references in message bodies."""

from __future__ import annotations

import io
import os
import struct
import uuid
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from PIL import Image

from chatmq.services.api.errors import ApiError
from chatmq.services.api.files_routes import byte_range
from chatmq.services.api.uploads import UploadRefusedError, sniff, take_upload
from chatmq.services.chat.acceptance import file_reference
from chatmq.services.chat.file_collector import FileCollector
from chatmq.services.store.base import Group, GroupMember
from chatmq.services.store.files import FileInfo, FileStore, may_read, new_file_id, thumbnail_id
from chatmq.services.store.local_files import LocalFileStore

DAY = 86_400.0
T0 = 1_800_000_000.0  # the injected clock's start, seconds


@pytest.fixture(params=["local", pytest.param("gridfs", marks=pytest.mark.cluster)])
async def files(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FileStore]:
    if request.param == "local":
        store: FileStore = LocalFileStore(tmp_path / "files")
        async with store:
            yield store
        return
    url = os.environ.get("CHATMQ_MONGO_URL")
    if not url:
        pytest.skip("CHATMQ_MONGO_URL is not set")
    from pymongo import AsyncMongoClient

    from chatmq.services.store.mongo.files import GridFSFileStore

    database = f"test_files_{uuid.uuid4().hex[:10]}"
    store = GridFSFileStore(url, database)
    try:
        async with store:
            yield store
    finally:
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(url)
        await client.drop_database(database)
        await client.close()


async def stored(files: FileStore, tmp_path: Path, data: bytes, created_at: int, owner: str = "u_alice",
                 **kw: object) -> FileInfo:
    source = tmp_path / f"src-{uuid.uuid4().hex}"
    source.write_bytes(data)
    info = FileInfo(str(kw.pop("file_id", new_file_id())), owner, len(data), "application/octet-stream", "x" * 64,
                    created_at, **kw)  # type: ignore[arg-type]
    await files.put(info, source)
    return info


async def read_all(files: FileStore, file_id: str, start: int, end: int) -> bytes:
    return b"".join([chunk async for chunk in files.read(file_id, start, end)])


async def test_a_stored_file_reads_back_whole_and_by_range(files: FileStore, tmp_path: Path) -> None:
    data = os.urandom(700_000)  # several GridFS chunks (255 KiB each) and local read chunks
    info = await stored(files, tmp_path, data, 1)
    assert await files.info(info.file_id) == info
    assert await read_all(files, info.file_id, 0, len(data)) == data
    assert await read_all(files, info.file_id, 300_000, 600_001) == data[300_000:600_001]
    assert await read_all(files, info.file_id, len(data) - 1, len(data)) == data[-1:]
    assert await files.info(new_file_id()) is None


async def test_sent_files_are_kept_and_unreferenced_uploads_collected_after_the_retention(
    files: FileStore, tmp_path: Path
) -> None:
    now = [T0]
    collector = FileCollector(files, retention=DAY, clock=lambda: now[0])
    ms = int(T0 * 1000)
    sent = await stored(files, tmp_path, b"sent", ms)
    idle = await stored(files, tmp_path, b"idle", ms, thumbnail=None)
    thumb = await stored(files, tmp_path, b"thumb", ms, file_id=thumbnail_id(idle.file_id), parent=idle.file_id)
    await files.add_conversation(sent.file_id, "u_alice:u_bob")
    await files.add_conversation(sent.file_id, "u_alice:u_bob")  # twice: recorded once
    assert (await files.info(sent.file_id)) == sent.with_conversation("u_alice:u_bob")

    now[0] = T0 + DAY - 1
    assert await collector.collect() == []
    now[0] = T0 + DAY + 1
    assert await collector.collect() == [idle.file_id]
    assert await files.info(idle.file_id) is None
    assert await files.info(thumb.file_id) is None  # its thumbnail went with it
    assert await files.info(sent.file_id) is not None
    assert await collector.collect() == []


class Groups:
    """``GroupStore.get_group`` over a dict (the part ``may_read`` uses)."""

    def __init__(self, *groups: Group) -> None:
        self.groups = {g.group_id: g for g in groups}

    async def get_group(self, group_id: str) -> Group | None:
        return self.groups.get(group_id)


async def test_who_may_read_a_file() -> None:
    group = Group("g1", "team", "u_alice", 1, (GroupMember("u_alice", "admin", 1), GroupMember("u_carl", "member", 1)))
    groups = Groups(group)
    info = FileInfo("f" + "0" * 32, "u_alice", 1, "text/plain", "x", 1)
    assert await may_read(info, "u_alice", groups)  # type: ignore[arg-type]
    assert not await may_read(info, "u_bob", groups)  # type: ignore[arg-type]
    sent = info.with_conversation("u_alice:u_bob").with_conversation("g1")
    assert await may_read(sent, "u_bob", groups)  # type: ignore[arg-type]
    assert await may_read(sent, "u_carl", groups)  # type: ignore[arg-type]
    assert not await may_read(sent, "u_dora", groups)  # type: ignore[arg-type]


# ------------------------------------------------------------------ uploads


def png_header(width: int, height: int) -> bytes:
    """A valid PNG that claims ``width`` x ``height`` pixels of one bit in a few bytes (a decompression bomb
    as far as its header goes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_an_image_gets_a_sniffed_type_and_a_thumbnail() -> None:
    image = io.BytesIO()
    Image.new("RGB", (1200, 600), (10, 200, 30)).save(image, "PNG")
    upload = take_upload(io.BytesIO(image.getvalue()), 10_000_000)
    try:
        assert (upload.content_type, upload.size) == ("image/png", len(image.getvalue()))
        assert upload.path.read_bytes() == image.getvalue()
        assert upload.thumbnail is not None
        with Image.open(upload.thumbnail) as thumb:
            assert (thumb.format, thumb.size) == ("JPEG", (320, 160))
    finally:
        upload.discard()
    assert not upload.path.exists()


@pytest.mark.parametrize("side", [8_000, 100_000])  # over MAX_IMAGE_PIXELS; over twice that (Pillow's own error)
def test_a_decompression_bomb_is_refused_before_it_is_decoded(side: int) -> None:
    with pytest.raises(UploadRefusedError) as refused:
        take_upload(io.BytesIO(png_header(side, side)), 10_000_000)
    assert refused.value.status == 422
    assert f"{side * side} pixels" in refused.value.detail


def test_a_damaged_image_is_kept_without_a_thumbnail() -> None:
    damaged = png_header(10, 10)[:-30] + b"\x00" * 30  # its pixel data cut short
    upload = take_upload(io.BytesIO(damaged), 10_000)
    try:
        assert (upload.content_type, upload.size, upload.thumbnail) == ("image/png", len(damaged), None)
    finally:
        upload.discard()


def test_an_upload_over_the_limit_is_refused_while_it_is_copied() -> None:
    with pytest.raises(UploadRefusedError) as refused:
        take_upload(io.BytesIO(b"x" * 5000), 4096)
    assert refused.value.status == 413


@pytest.mark.parametrize(("head", "kind"), [
    (b"%PDF-1.7\n", "application/pdf"),
    ("héllo, plain text\n".encode(), "text/plain"),
    ("abc é".encode()[:-1], "text/plain"),  # a character cut by the end of the sniffed head
    (b"\x00\x01\x02binary", "application/octet-stream"),
    (b"", "text/plain"),
])
def test_sniffing(head: bytes, kind: str) -> None:
    assert sniff(head) == kind


@pytest.mark.parametrize(("header", "span"), [
    (None, None), ("bytes=0-9", (0, 10)), ("bytes=10-", (10, 100)), ("bytes=-5", (95, 100)),
    ("bytes=90-500", (90, 100)), ("bytes=1-2,4-5", None), ("items=1-2", None),
])
def test_byte_ranges(header: str | None, span: tuple[int, int] | None) -> None:
    assert byte_range(header, 100) == span


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=5-4"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(ApiError) as refused:
        byte_range(header, 100)
    assert refused.value.status == 416


@pytest.mark.parametrize(("body", "ref"), [
    (b'{"text":"hi"}', None), (b'{"file":"f1","name":"a.png"}', "f1"), (b'{"text":"\\"file\\""}', None),
    (b'{"file":7}', None), (b'{"inner":{"file":"f1"}}', None),
])
def test_file_references(body: bytes, ref: str | None) -> None:
    assert file_reference(msgspec.Raw(body)) == ref
