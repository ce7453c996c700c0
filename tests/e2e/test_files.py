"""Files end to end, in both modes (a folder in embedded mode, GridFS in the cluster): upload, send in a
message, download whole and by range; thumbnails; too large; decompression bombs; who may read."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from chatmq.devices.sdk import ApiError, MessageRejectedError
from tests.e2e.harness import Deployment, Peer, Users, cluster, serve
from tests.unit.test_files import png_header

TIMEOUT = 15.0
MAX_FILE_SIZE = 100_000  # small, so "too large" is quick: the REST body limit is this plus 64 KiB of framing


@pytest.fixture(scope="module", params=["embedded", pytest.param("cluster", marks=pytest.mark.cluster)])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    env = {"CHATMQ_MAX_FILE_SIZE": str(MAX_FILE_SIZE)}
    if request.param == "embedded":
        yield from serve(tmp_path_factory.mktemp("chatmq"), **env)
        return
    with pytest.MonkeyPatch.context() as patch:  # also for the cluster's own settings (its nginx's limit)
        patch.setenv("CHATMQ_MAX_FILE_SIZE", str(MAX_FILE_SIZE))
        yield from cluster(tmp_path_factory.mktemp("cluster"), env=env)


def fetch(server: Deployment, peer: Peer, file_id: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{server.api_url}/api/v1/files/{file_id}", timeout=TIMEOUT,
                     headers={"Authorization": f"Bearer {peer.access_token}", **headers})


def test_a_file_sent_in_a_message_reaches_its_recipient_whole_and_by_range(
    server: Deployment, users: Users, tmp_path: Path
) -> None:
    alice, bob = users(), users()
    data = os.urandom(90_000)
    (tmp_path / "notes.bin").write_bytes(data)
    up = alice.upload_file(tmp_path / "notes.bin")
    assert (up["size"], up["sha256"], up["content_type"]) == (
        len(data), hashlib.sha256(data).hexdigest(), "application/octet-stream")
    assert "thumbnail" not in up

    cid = alice.send(bob.uid, {"file": up["file_id"], "name": "notes.bin"})
    alice.wait_ack(cid, TIMEOUT)
    [got] = bob.wait_messages(1, TIMEOUT)
    assert got["body"] == {"file": up["file_id"], "name": "notes.bin"}
    assert bob.download_file(up["file_id"], tmp_path / "got.bin") == len(data)
    assert (tmp_path / "got.bin").read_bytes() == data

    part = fetch(server, bob, up["file_id"], Range="bytes=1000-1999")
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    assert part.content == data[1000:2000]
    (tmp_path / "half.bin").write_bytes(data[:40_000])  # an interrupted download, resumed
    assert bob.download_file(up["file_id"], tmp_path / "half.bin", offset=40_000) == len(data) - 40_000
    assert (tmp_path / "half.bin").read_bytes() == data
    assert fetch(server, bob, up["file_id"], Range=f"bytes={len(data)}-").status_code == 416


def test_only_the_uploader_and_the_conversation_may_read_a_file(users: Users, tmp_path: Path) -> None:
    alice, bob, carl = users(), users(), users()
    (tmp_path / "a.txt").write_text("for bob only\n")
    up = alice.upload_file(tmp_path / "a.txt")
    assert up["content_type"] == "text/plain"
    with pytest.raises(ApiError) as before:  # not sent yet: bob may not read it
        bob.download_file(up["file_id"], tmp_path / "x")
    assert before.value.status_code == 404

    alice.wait_ack(alice.send(bob.uid, {"file": up["file_id"]}), TIMEOUT)
    bob.download_file(up["file_id"], tmp_path / "b.txt")
    assert (tmp_path / "b.txt").read_text() == "for bob only\n"
    with pytest.raises(ApiError) as outsider:
        carl.download_file(up["file_id"], tmp_path / "c")
    assert outsider.value.status_code == 404  # as for a file that does not exist

    # naming a file one may not read does not make it readable
    with pytest.raises(MessageRejectedError) as refused:
        carl.wait_ack(carl.send(alice.uid, {"file": up["file_id"]}), TIMEOUT)
    assert refused.value.code == "forbidden"
    with pytest.raises(ApiError):
        carl.download_file(up["file_id"], tmp_path / "c")


def test_group_members_may_read_a_file_sent_to_the_group(users: Users, tmp_path: Path) -> None:
    alice, bob, carl = users(), users(), users()
    group = alice.create_group("files", [bob.uid])
    bob.wait_for(lambda: bob.events, TIMEOUT)
    (tmp_path / "g.txt").write_text("to the group\n")
    up = alice.upload_file(tmp_path / "g.txt")
    alice.wait_ack(alice.send_group(group["group_id"], {"file": up["file_id"]}), TIMEOUT)
    bob.wait_messages(1, TIMEOUT)
    assert bob.download_file(up["file_id"], tmp_path / "b.txt") == len("to the group\n")
    with pytest.raises(ApiError):
        carl.download_file(up["file_id"], tmp_path / "c")


def test_an_image_gets_a_thumbnail_and_a_bomb_is_refused(server: Deployment, users: Users, tmp_path: Path) -> None:
    alice = users(connect=False)
    image = io.BytesIO()
    Image.new("RGB", (640, 480), (200, 30, 30)).save(image, "PNG")
    (tmp_path / "photo.dat").write_bytes(image.getvalue())  # the name says nothing: the bytes do
    up = alice.upload_file(tmp_path / "photo.dat")
    assert up["content_type"] == "image/png"
    thumb = fetch(server, alice, up["thumbnail"])
    assert (thumb.status_code, thumb.headers["content-type"]) == (200, "image/jpeg")
    with Image.open(io.BytesIO(thumb.content)) as small:
        assert small.size == (320, 240)

    (tmp_path / "bomb.png").write_bytes(png_header(100_000, 100_000))
    with pytest.raises(ApiError) as refused:
        alice.upload_file(tmp_path / "bomb.png")
    assert refused.value.status_code == 422
    assert "pixels" in refused.value.detail


@pytest.mark.parametrize("size", [MAX_FILE_SIZE + 1, 400_000])  # counted as copied; refused by Content-Length
def test_a_file_over_max_file_size_is_refused(users: Users, tmp_path: Path, size: int) -> None:
    alice = users(connect=False)
    (tmp_path / "big.bin").write_bytes(os.urandom(size))
    with pytest.raises(ApiError) as refused:
        alice.upload_file(tmp_path / "big.bin")
    assert refused.value.status_code == 413
    (tmp_path / "ok.bin").write_bytes(os.urandom(MAX_FILE_SIZE))
    assert alice.upload_file(tmp_path / "ok.bin")["size"] == MAX_FILE_SIZE
