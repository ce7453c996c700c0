"""``/files``: upload a file to send in messages, and download one (with Range requests).

The upload's size is bounded while it streams in: ``BodyLimit`` allows this route ``max_file_size``
plus room for the multipart framing and refuses (413) past it; Starlette's form parser spools the
file part to a temporary file (never the whole body in memory); ``take_upload`` copies it with a
count, sniffs its type and makes the thumbnail in a worker thread.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.datastructures import UploadFile as StarletteUpload

from chatmq.core.ids import now_ms
from chatmq.services.api.deps import Ctx, CurrentUser
from chatmq.services.api.errors import ApiError, not_found
from chatmq.services.api.uploads import UploadRefusedError, take_upload
from chatmq.services.store.files import FILE_ID, FileInfo, FileStore, may_read, new_file_id, thumbnail_id

PATH = "/files"
#: what a multipart body may hold beside the file itself (boundaries, part headers, a file name)
MULTIPART_SLACK = 64 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class FileOut(BaseModel):
    file_id: str
    size: int
    content_type: str
    sha256: str
    thumbnail: str | None = None


def _files(ctx: Ctx) -> FileStore:
    if ctx.files is None:
        raise ApiError(503, "file storage is not configured")
    return ctx.files


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) of a single-range ``Range`` header; ``None`` for the whole file
    (no header, or one this does not serve, as RFC 9110 allows); ``ApiError`` 416 when unsatisfiable."""
    if header is None:
        return None
    found = _RANGE.match(header.strip())
    if found is None or found.group(1) == found.group(2) == "":
        return None
    first, last = found.group(1), found.group(2)
    if first == "":  # the last N bytes
        start, end = max(0, size - int(last)), size
    else:
        start = int(first)
        end = size if last == "" else min(size, int(last) + 1)
    if start >= size or start >= end:
        raise ApiError(416, f"the range {header!r} is outside the file's {size} bytes",
                       headers={"Content-Range": f"bytes */{size}"})
    return start, end


def files_router(max_file_size: int) -> APIRouter:
    router = APIRouter(prefix=PATH, tags=["files"])

    @router.post("", status_code=201, response_model=FileOut, response_model_exclude_none=True,
                 responses={413: {"description": "The file is larger than max_file_size."},
                            422: {"description": "No file part, or an image that cannot be taken."}})
    async def upload(request: Request, user: CurrentUser, ctx: Ctx) -> FileOut:
        """Upload one file (multipart/form-data, part ``file``). Its content type is sniffed from its
        bytes; images get a JPEG thumbnail (``thumbnail``: its file id). Send it in a message as
        ``"body": {"file": "<file_id>", ...}``; an upload no message names is deleted after a day."""
        files = _files(ctx)
        async with request.form(max_files=1, max_fields=8) as form:
            part = form.get("file")
            if not isinstance(part, StarletteUpload):
                raise ApiError(422, "send the file as the multipart part named 'file'")
            try:
                taken = await asyncio.to_thread(take_upload, part.file, max_file_size)
            except UploadRefusedError as exc:
                raise ApiError(exc.status, exc.detail) from None
        try:
            file_id, now = new_file_id(), now_ms()
            thumb = None
            if taken.thumbnail is not None:
                thumb = thumbnail_id(file_id)
                await files.put(FileInfo(thumb, user.user_id, taken.thumbnail_size, "image/jpeg",
                                         taken.thumbnail_sha256, now, parent=file_id), taken.thumbnail)
            await files.put(FileInfo(file_id, user.user_id, taken.size, taken.content_type, taken.sha256, now,
                                     thumbnail=thumb), taken.path)
        finally:
            await asyncio.to_thread(taken.discard)
        return FileOut(file_id=file_id, size=taken.size, content_type=taken.content_type, sha256=taken.sha256,
                       thumbnail=thumb)

    @router.get("/{file_id}", response_class=StreamingResponse,
                responses={200: {"content": {"application/octet-stream": {}}},
                           206: {"description": "The requested range."},
                           404: {"description": "No such file, or not yours to read."},
                           416: {"description": "The range is outside the file."}})
    async def download(file_id: str, user: CurrentUser, ctx: Ctx,
                       range_: Annotated[str | None, Header(alias="Range")] = None) -> StreamingResponse:
        """The file's bytes, for its uploader and the members of a conversation it was sent in (others:
        404, as for a file that does not exist). One ``Range: bytes=a-b`` is answered 206."""
        files = _files(ctx)
        info = await files.info(file_id) if FILE_ID.match(file_id) else None
        readable = info
        if info is not None and info.parent is not None:  # a thumbnail: read under its image's rules
            readable = await files.info(info.parent)
        if info is None or readable is None or not await may_read(readable, user.user_id, ctx.store):
            raise not_found("no such file")
        span = byte_range(range_, info.size)
        start, end = span or (0, info.size)
        headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start), "ETag": f'"{info.sha256}"',
                   "Cache-Control": "private, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff",
                   "Content-Security-Policy": "default-src 'none'; sandbox",  # never a page of this origin
                   "Content-Disposition": "attachment" if not info.content_type.startswith("image/") else "inline"}
        if span is not None:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{info.size}"
        return StreamingResponse(files.read(file_id, start, end), status_code=206 if span else 200,
                                 media_type=info.content_type, headers=headers)

    return router

