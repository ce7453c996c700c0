"""Readiness probes for scripts/services.sh, using the Python standard library only.

    probe.py kafka HOST PORT     ApiVersions, then a Metadata request: ok when the broker
                                 lists itself (so the broker, not just the socket, is up)
    probe.py mongo HOST PORT     OP_MSG {ping: 1} on the admin database: ok when it says ok: 1
    probe.py http URL [--any-status]
                                 GET URL: ok on 200 (on any HTTP answer with --any-status)

One attempt each, with a short timeout; exit 0 and a one-line summary on stdout when the
server answered as expected, exit 1 with the reason on stderr otherwise. services.sh
retries until its own deadline. No client library (aiokafka, pymongo, ...) is needed, so
the probes work from any python3 >= 3.8.
"""

from __future__ import annotations

import socket
import struct
import sys
import urllib.error
import urllib.request

TIMEOUT = 3.0


class ProbeError(Exception):
    pass


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ProbeError("connection closed by the server")
        buf += chunk
    return bytes(buf)


# --- Kafka -------------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ProbeError("short Kafka response")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return int(value)

    def string(self) -> str | None:
        n = self.take(">h")
        if n < 0:
            return None
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        return raw.decode("utf-8", "replace")


def _kafka_call(sock: socket.socket, api_key: int, version: int, corr: int, body: bytes) -> _Reader:
    client_id = b"chatmq-probe"
    # Request header v1: api_key, api_version, correlation_id, client_id (nullable string).
    header = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id
    msg = header + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    r = _Reader(_recv_exact(sock, size))
    if r.take(">i") != corr:  # response header v0: correlation_id
        raise ProbeError("Kafka answered with a wrong correlation id")
    return r


def probe_kafka(host: str, port: int) -> str:
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        sock.settimeout(TIMEOUT)
        # ApiVersions v0 (kept by every broker version) tells which Metadata versions it takes.
        r = _kafka_call(sock, 18, 0, 1, b"")
        err = r.take(">h")
        if err != 0:
            raise ProbeError(f"ApiVersions error code {err}")
        ranges = {}
        for _ in range(r.take(">i")):
            key, lo, hi = r.take(">h"), r.take(">h"), r.take(">h")
            ranges[key] = (lo, hi)
        if 3 not in ranges:
            raise ProbeError("broker does not list the Metadata API")
        lo, hi = ranges[3]
        # Versions 4..8 are the non-flexible ones this probe encodes (Kafka 4.x takes 4..13).
        usable = [v for v in range(4, 9) if lo <= v <= hi]
        if not usable:
            raise ProbeError(f"broker's Metadata versions {lo}..{hi} do not include 4..8")
        v = max(usable)
        body = struct.pack(">i?", -1, False)  # all topics (null array), no auto-creation
        if v >= 8:
            body += struct.pack(">??", False, False)  # no authorized-operations lists
        r = _kafka_call(sock, 3, v, 2, body)
        r.take(">i")  # throttle_time_ms
        brokers = []
        for _ in range(r.take(">i")):
            node_id, bhost, bport = r.take(">i"), r.string(), r.take(">i")
            r.string()  # rack
            brokers.append(f"{node_id}@{bhost}:{bport}")
        cluster_id = r.string()
        controller_id = r.take(">i")
        if not brokers:
            raise ProbeError("Metadata lists no broker yet")
        return (
            f"kafka {host}:{port}: brokers {', '.join(brokers)}, cluster {cluster_id}, "
            f"controller {controller_id} (Metadata v{v})"
        )


# --- MongoDB wire protocol -----------------------------------------------------------------


def _bson_cstring(s: str) -> bytes:
    return s.encode() + b"\x00"


def _bson_ping() -> bytes:
    elems = b"\x10" + _bson_cstring("ping") + struct.pack("<i", 1)
    db = b"admin"
    elems += b"\x02" + _bson_cstring("$db") + struct.pack("<i", len(db) + 1) + db + b"\x00"
    return struct.pack("<i", len(elems) + 5) + elems + b"\x00"


def _bson_top_level(doc: bytes) -> dict[str, object]:
    """Decode the scalar top-level fields of a BSON document (enough for ok/errmsg)."""
    out: dict[str, object] = {}
    pos, end = 4, len(doc) - 1
    fixed = {0x01: 8, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16}
    while pos < end:
        kind = doc[pos]
        name_end = doc.index(b"\x00", pos + 1)
        name = doc[pos + 1 : name_end].decode("utf-8", "replace")
        pos = name_end + 1
        if kind == 0x01:
            out[name] = struct.unpack_from("<d", doc, pos)[0]
        elif kind == 0x10:
            out[name] = struct.unpack_from("<i", doc, pos)[0]
        elif kind == 0x12:
            out[name] = struct.unpack_from("<q", doc, pos)[0]
        elif kind == 0x08:
            out[name] = doc[pos] != 0
        elif kind == 0x02:
            n = struct.unpack_from("<i", doc, pos)[0]
            out[name] = doc[pos + 4 : pos + 3 + n].decode("utf-8", "replace")
            pos += 4 + n
            continue
        if kind in fixed:
            pos += fixed[kind]
        elif kind in (0x03, 0x04):  # embedded document / array
            pos += struct.unpack_from("<i", doc, pos)[0]
        elif kind == 0x05:  # binary
            pos += 5 + struct.unpack_from("<i", doc, pos)[0]
        else:
            break  # a type not needed here: stop decoding
    return out


def probe_mongo(host: str, port: int) -> str:
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        sock.settimeout(TIMEOUT)
        # OP_MSG (2013): flagBits 0, one kind-0 section holding the command document.
        payload = struct.pack("<I", 0) + b"\x00" + _bson_ping()
        sock.sendall(struct.pack("<iiii", 16 + len(payload), 1, 0, 2013) + payload)
        length, _req, _resp_to, opcode = struct.unpack("<iiii", _recv_exact(sock, 16))
        body = _recv_exact(sock, length - 16)
        if opcode != 2013:
            raise ProbeError(f"unexpected reply opcode {opcode}")
        if body[4] != 0:
            raise ProbeError("reply does not start with a kind-0 section")
        doc_len = struct.unpack_from("<i", body, 5)[0]
        reply = _bson_top_level(body[5 : 5 + doc_len])
        if reply.get("ok") != 1:
            raise ProbeError(f"ping answered {reply}")
        return f"mongo {host}:{port}: ping ok"


# --- HTTP ---------------------------------------------------------------------------------


def probe_http(url: str, any_status: bool) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(url, timeout=TIMEOUT) as resp:
            status = resp.status
    except urllib.error.HTTPError as e:
        status = e.code
    except (urllib.error.URLError, OSError) as e:
        raise ProbeError(f"GET {url}: {getattr(e, 'reason', e)}") from None
    if status != 200 and not any_status:
        raise ProbeError(f"GET {url}: HTTP {status}")
    return f"GET {url}: HTTP {status}"


def main(argv: list[str]) -> int:
    try:
        if len(argv) == 3 and argv[0] in ("kafka", "mongo"):
            fn = probe_kafka if argv[0] == "kafka" else probe_mongo
            print(fn(argv[1], int(argv[2])))
        elif len(argv) in (2, 3) and argv[0] == "http":
            any_status = argv[2:] == ["--any-status"]
            if len(argv) == 3 and not any_status:
                raise SystemExit(__doc__)
            print(probe_http(argv[1], any_status))
        else:
            raise SystemExit(__doc__)
    except (ProbeError, OSError, ValueError) as e:
        print(f"{argv[0]}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
