"""An unauthenticated 300 MB POST against ``chatmq serve``: answered 413 (problem details) after at
most the configured limit, with the server's memory flat (issue 12: it once cost +837 MB RSS).

Embedded only: in a cluster nginx stands in front of the API and refuses bodies over its own
``client_max_body_size`` first (the unit tests cover the API's answer in any mode)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import orjson
import pytest

from tests.e2e.harness import ServerProcess, rss_kib, serve

TOTAL = 300 * 1024 * 1024
CHUNK = b"x" * (256 * 1024)
ALLOWED_GROWTH = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from serve(tmp_path_factory.mktemp("body-limit"))


class RssWatch:
    """The peak RSS of a process, sampled every 20 ms while it runs."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self.baseline = rss_kib(pid) * 1024
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_kib(self._pid) * 1024)

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_kib(self._pid) * 1024)


def post_huge(server: ServerProcess, path: str, *, chunked: bool) -> tuple[int, dict[str, object], int]:
    """POST a 300 MB body (chunked, or with its Content-Length) and read the answer while sending;
    returns the status, the JSON body and how many bytes were sent before the server stopped us."""
    head = f"POST {path} HTTP/1.1\r\nHost: {server.host}\r\nContent-Type: application/json\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {TOTAL}\r\n\r\n"
    answer = bytearray()
    sock = socket.create_connection((server.host, server.http_port), timeout=30)

    def read() -> None:
        with contextlib.suppress(OSError):
            while data := sock.recv(65536):
                answer.extend(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    sent = 0
    try:
        sock.sendall(head.encode())
        frame = f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n" if chunked else CHUNK
        while sent < TOTAL and not answer:
            sock.sendall(frame)
            sent += len(CHUNK)
        if chunked and sent >= TOTAL:
            sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server closed the connection on us: the answer is already read (or being read)
    reader.join(10)
    sock.close()
    header, _, body = bytes(answer).partition(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1])
    assert b"content-type: application/problem+json" in header.lower()
    return status, orjson.loads(body), sent


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_unauthenticated_300mb_post_is_413_and_memory_stays_flat(server: ServerProcess, chunked: bool) -> None:
    assert server.proc is not None
    time.sleep(0.5)  # let the server settle after start
    with RssWatch(server.proc.pid) as rss:
        status, problem, sent = post_huge(server, "/api/v1/auth/register", chunked=chunked)
    assert status == 413
    assert problem["type"] == "/api/v1/problems/payload-too-large"
    assert problem["detail"] == "the request body is larger than 1048576 bytes"
    assert sent < TOTAL // 4  # stopped long before the end
    assert rss.peak - rss.baseline < ALLOWED_GROWTH, f"RSS grew by {(rss.peak - rss.baseline) >> 20} MB"
