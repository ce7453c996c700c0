"""What an upload becomes before it is stored: its bytes in a temporary file, their size and SHA-256,
a content type sniffed from the bytes (``filetype``; the client's claim is not trusted), and for
images a thumbnail (Pillow).

Everything here blocks (disk, hashing, decoding) and runs in a worker thread. Images are guarded
against decompression bombs: one of more than ``MAX_IMAGE_PIXELS`` pixels is refused
(``UploadRefusedError``, 422) before it is decoded. An image Pillow cannot make a thumbnail of
(damaged, or a mode it does not convert) is still stored, without a thumbnail.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import filetype
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_IMAGE_PIXELS = 50_000_000  # about 7,000 x 7,000; Pillow's own default warns only up to twice as many
THUMBNAIL_SIZE = (320, 320)
log = logging.getLogger(__name__)
_SNIFF = 8192
_CHUNK = 256 * 1024
_THUMBNAILED = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"}
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS  # Pillow warns above it and refuses above twice it


class UploadRefusedError(Exception):
    """The upload is not acceptable (``status``: 413 too large, 422 an image that cannot be taken)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Upload:
    """An upload in a temporary file (removed by ``discard``), with its thumbnail's when it has one."""

    path: Path
    size: int
    sha256: str
    content_type: str
    thumbnail: Path | None = None
    thumbnail_size: int = 0
    thumbnail_sha256: str = ""

    def discard(self) -> None:
        for path in (self.path, self.thumbnail):
            if path is not None:
                path.unlink(missing_ok=True)


def _temporary() -> Path:
    fd, name = tempfile.mkstemp(prefix="chatmq-upload-")
    os.close(fd)
    return Path(name)


def _copy(source: BinaryIO, max_size: int) -> tuple[Path, int, str, bytes]:
    """``source`` copied to a temporary file, counting and hashing; ``UploadRefusedError`` (413) past
    ``max_size`` bytes (the copy stops there)."""
    path = _temporary()
    digest, size, head = hashlib.sha256(), 0, b""
    try:
        with path.open("wb") as out:
            while chunk := source.read(_CHUNK):
                size += len(chunk)
                if size > max_size:
                    raise UploadRefusedError(413, f"the file is larger than {max_size} bytes")
                if len(head) < _SNIFF:
                    head += chunk[: _SNIFF - len(head)]
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, size, digest.hexdigest(), head


def sniff(head: bytes) -> str:
    """The content type of bytes beginning with ``head``: by their signature, else ``text/plain`` for
    UTF-8 text, else ``application/octet-stream``."""
    kind = filetype.guess_mime(head) if head else None
    if isinstance(kind, str):
        return kind
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a character cut at the end of the head is still text
        if exc.start < len(head) - 3:
            return "application/octet-stream"
        text = head[: exc.start].decode("utf-8")
    return "text/plain" if "\x00" not in text else "application/octet-stream"


def _thumbnail(path: Path) -> Path | None:
    """A JPEG thumbnail (at most ``THUMBNAIL_SIZE``, turned as its EXIF says) of the image at ``path``;
    ``None`` when Pillow cannot read it; ``UploadRefusedError`` for a decompression bomb."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise UploadRefusedError(422, f"the image has {width}x{height} pixels, more than "
                                                  f"{MAX_IMAGE_PIXELS} (a decompression bomb?)")
                image.draft("RGB", THUMBNAIL_SIZE)  # JPEG: decode at a reduced scale
                small = ImageOps.exif_transpose(image)
                small.thumbnail(THUMBNAIL_SIZE)
                out = _temporary()
                try:
                    small.convert("RGB").save(out, "JPEG", quality=80)
                except BaseException:
                    out.unlink(missing_ok=True)
                    raise
                return out
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise UploadRefusedError(422, f"the image is too large to decode ({exc})") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            log.info("no thumbnail for an upload: %s", exc)
            return None


def take_upload(source: BinaryIO, max_size: int) -> Upload:
    """Copy, measure and sniff an upload, with a thumbnail for an image (blocking: run it in a thread)."""
    path, size, sha256, head = _copy(source, max_size)
    content_type = sniff(head)
    if content_type not in _THUMBNAILED:
        return Upload(path, size, sha256, content_type)
    try:
        thumb = _thumbnail(path)
        data = thumb.read_bytes() if thumb is not None else b""
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if thumb is None:
        return Upload(path, size, sha256, content_type)
    return Upload(path, size, sha256, content_type, thumb, len(data), hashlib.sha256(data).hexdigest())


