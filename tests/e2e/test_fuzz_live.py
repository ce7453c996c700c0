"""A bounded fuzz run against a live ``chatmq serve``: mutated MQTT from many connections for a fixed
time, then the server must still be up, a normal chat must still work and its log must hold no
traceback.

Each case is one TCP connection that sends one of: random bytes; a valid chat client's session
(CONNECT with real credentials, SUBSCRIBE to its inbox, PUBLISHes of messages and receipts to its
outbox, PINGREQ, DISCONNECT) with packets mutated (``tests.fuzzing.mutate``: bit flips, cuts, wrong
remaining lengths, random types and flags, repeats); a valid CONNECT followed by packets of random
type, flags and body; a session cut short, or sent a few bytes at a time; or valid packets carrying
mutated envelopes. It then reads what the server answers (every answer must decode with
``chatmq.broker.wire``) and closes the connection, or resets it once its CONNECT was answered.

Bounded: ``CHATMQ_FUZZ_SECONDS`` (default 3) and ``CHATMQ_FUZZ_CASES`` (default 20,000), with
``WORKERS`` connections at a time, on loopback only. The fuzzer connects from 127.0.0.2, so per-address
limits (connect rate, failed-auth back-off) it trips do not apply to the chat checked afterwards
from 127.0.0.1. Seeded: the seed is printed, ``CHATMQ_FUZZ_SEED=<seed>`` runs the same cases again
and ``CHATMQ_FUZZ_CASE=<n>`` runs only case ``n`` of that seed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import re
import secrets
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from chatmq.broker.wire import (
    CONNACK,
    DISCONNECT_BYTES,
    MAX_REMAINING_LENGTH,
    PINGREQ_BYTES,
    PUBACK,
    MalformedPacketError,
    PacketSplitter,
    encode_ack,
    encode_connect,
    encode_packet,
    encode_publish,
    encode_remaining_length,
    encode_subscribe,
    encode_topic,
)
from tests.e2e.harness import Peer, ServerProcess, Users, serve, user_factory
from tests.fuzzing import mutate, remaining_length_end

SECONDS = float(os.environ.get("CHATMQ_FUZZ_SECONDS", "3"))
MAX_CASES = int(os.environ.get("CHATMQ_FUZZ_CASES", "20000"))
ONLY_CASE = os.environ.get("CHATMQ_FUZZ_CASE")
WORKERS = 32
FUZZ_SOURCE = "127.0.0.2"
READ_WINDOW = 0.15  # seconds a case waits for the server's answers
CASE_TIMEOUT = 5.0
TIMEOUT = 15


@dataclass(frozen=True)
class Identity:
    """The fuzzing user's credentials and the user its messages go to."""

    user_id: str
    token: str
    peer_id: str


@dataclass
class Case:
    """One connection's worth of bytes: ``chunks`` written in order, ``pause`` seconds apart."""

    index: int
    kind: str
    chunks: list[bytes]
    pause: float = 0.0
    reset: bool = False  # end with a TCP reset instead of a close

    def describe(self, limit: int = 160) -> str:
        data = b"".join(self.chunks)
        shown = data[:limit].hex() + ("…" if len(data) > limit else "")
        return f"case {self.index} ({self.kind}, {len(data)} bytes in {len(self.chunks)} writes): {shown}"


@dataclass
class Tally:
    cases: int = 0
    sent: int = 0
    answers: int = 0
    unreachable: int = 0
    recent: collections.deque[Case] = field(default_factory=lambda: collections.deque(maxlen=20))
    bad_answers: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------

def envelope(rng: random.Random, me: Identity, index: int) -> bytes:
    """An outbox envelope, valid or not."""
    choice = rng.randrange(6)
    if choice == 0:
        return orjson.dumps({"type": "message", "id": f"fz{index}", "to": me.peer_id,
                             "body": {"text": rng.randbytes(rng.randint(0, 40)).hex()}})
    if choice == 1:
        return orjson.dumps({"type": "receipt", "status": rng.choice(("delivered", "read")),
                             "ids": [f"id{rng.randrange(1000)}" for _ in range(rng.randint(1, 3))]})
    if choice == 2:  # wrong types in every field
        value: object = rng.choice([None, 1, -1.5, "", [], {}, "x" * 200, [1, [2, [3]]], {"a": {"b": {}}}])
        field_name = rng.choice(("type", "id", "to", "group", "body", "status", "ids"))
        return orjson.dumps({"type": "message", "id": f"fz{index}", "to": me.peer_id, "body": {},
                             field_name: value})
    if choice == 3:  # nested, within what orjson can encode again
        depth = rng.randint(1, 64)
        body = b'{"a":' * depth + b"1" + b"}" * depth
        return b'{"type":"message","id":"fz%d","to":"%s","body":' % (index, me.peer_id.encode()) + body + b"}"
    if choice == 4:
        return rng.randbytes(rng.randint(0, 300))
    return mutate(orjson.dumps({"type": "message", "id": f"fz{index}", "group": "g1", "body": {"n": index}}), rng)


def session(rng: random.Random, me: Identity, index: int) -> list[bytes]:
    """The packets of a valid chat client: CONNECT, SUBSCRIBE, publishes, maybe a ping and DISCONNECT."""
    outbox = encode_topic(f"users/{me.user_id}/outbox")
    packets = [encode_connect(f"fuzz-{index}", username=me.user_id, password=me.token),
               encode_subscribe(1, [(f"users/{me.user_id}/inbox", 1)])]
    for pid in range(2, 2 + rng.randint(0, 3)):
        qos = rng.choice((0, 1, 1, 2))
        packets.append(encode_publish(outbox, envelope(rng, me, index), qos, pid if qos else None))
    if rng.random() < 0.3:
        packets.append(encode_ack(PUBACK, rng.randint(1, 0xFFFF)))
    if rng.random() < 0.3:
        packets.append(PINGREQ_BYTES)
    if rng.random() < 0.5:
        packets.append(DISCONNECT_BYTES)
    return packets


def random_packet(rng: random.Random) -> bytes:
    """A packet of random type and flags with a random body and its true length."""
    body = rng.randbytes(rng.choice((0, 1, 2, 3, 4, rng.randint(5, 300))))
    return encode_packet(rng.randrange(256), body)


def make_case(seed: int, index: int, me: Identity) -> Case:
    """Case ``index`` of ``seed`` (the same bytes every time)."""
    rng = random.Random(f"{seed}:{index}")
    kind = rng.choice(("noise", "mutated_packet", "mutated_stream", "random_packets", "wrong_length",
                       "cut_short", "trickle", "envelopes"))
    packets = session(rng, me, index)
    chunks: list[bytes]
    if kind == "noise":
        chunks = [rng.randbytes(rng.randint(1, 512))]
    elif kind == "mutated_packet":  # one packet of a valid session mutated, the CONNECT included
        i = rng.randrange(len(packets))
        packets[i] = mutate(packets[i], rng)
        chunks = [b"".join(packets)]
    elif kind == "mutated_stream":  # the whole session's bytes mutated
        chunks = [mutate(b"".join(packets), rng, rng.randint(1, 8))]
    elif kind == "random_packets":
        chunks = [packets[0] + b"".join(random_packet(rng) for _ in range(rng.randint(1, 6)))]
    elif kind == "wrong_length":  # a packet after the CONNECT announces a length it does not have
        i = rng.randrange(1, len(packets))
        packet = packets[i]
        announced = rng.choice((0, 1, len(packet) + rng.randint(1, 100), 127, 128, 16_384, MAX_REMAINING_LENGTH))
        packets[i] = packet[:1] + encode_remaining_length(announced) + packet[remaining_length_end(packet):]
        chunks = [b"".join(packets)]
    elif kind == "cut_short":
        data = b"".join(packets)
        chunks = [data[:rng.randrange(len(data))]]
    elif kind == "trickle":  # a valid session a few bytes at a time
        data = b"".join(packets)
        chunks = []
        while data:
            n = rng.randint(1, 7)
            chunks.append(data[:n])
            data = data[n:]
        chunks = chunks[:40]
        return Case(index, kind, chunks, pause=0.002, reset=rng.random() < 0.3)
    else:  # envelopes: a valid session carrying many envelopes, valid and not
        outbox = encode_topic(f"users/{me.user_id}/outbox")
        chunks = [b"".join(packets[:2]) + b"".join(
            encode_publish(outbox, envelope(rng, me, index), 1, pid) for pid in range(2, 2 + rng.randint(1, 10)))]
    return Case(index, kind, chunks, reset=rng.random() < 0.3)


# --------------------------------------------------------------------------------------------
# Running cases
# --------------------------------------------------------------------------------------------

async def run_case(case: Case, port: int, tally: Tally) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(FUZZ_SOURCE, 0))
    except OSError:
        tally.unreachable += 1
        return
    answers = PacketSplitter()
    answered = False  # a CONNACK came back
    try:
        async with asyncio.timeout(CASE_TIMEOUT):
            with contextlib.suppress(ConnectionError):
                for chunk in case.chunks:
                    writer.write(chunk)
                    tally.sent += len(chunk)
                    await writer.drain()
                    if case.pause:
                        await asyncio.sleep(case.pause)
            deadline = asyncio.get_running_loop().time() + READ_WINDOW
            with contextlib.suppress(ConnectionError, TimeoutError):
                while (left := deadline - asyncio.get_running_loop().time()) > 0:
                    data = await asyncio.wait_for(reader.read(65536), left)
                    if not data:
                        break
                    try:
                        packets = answers.feed(data)
                    except MalformedPacketError as exc:
                        tally.bad_answers.append(f"{case.describe()}: the server answered {data[:64].hex()}: {exc}")
                        break
                    tally.answers += len(packets)
                    answered = answered or any(p.kind == CONNACK for p in packets)
    finally:
        # an abortive close (RST instead of FIN), at any point (a reset while a refused CONNECT waits
        # for its CONNACK has a test of its own: test_a_refused_connect_reset_by_the_client_logs_no_traceback)
        if case.reset:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def fuzz(seed: int, me: Identity, port: int, seconds: float, max_cases: int,
               only: int | None = None) -> Tally:
    """Cases of ``seed`` from ``WORKERS`` connections at a time until ``seconds`` or ``max_cases``."""
    tally = Tally()
    indices = iter([only] if only is not None else range(max_cases))
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds

    async def worker() -> None:
        for index in indices:
            if loop.time() >= until and only is None:
                return
            case = make_case(seed, index, me)
            tally.recent.append(case)
            tally.cases += 1
            await run_case(case, port, tally)

    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    return tally


# --------------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------------

FUZZ_SETTINGS = {"CHATMQ_CONNECT_RATE_PER_ADDRESS": "0"}
"""The fuzzer opens hundreds of connections a second from one address: without this the connect
rate limit would close most of them before their first byte is read (the other limits stay)."""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    yield from serve(tmp_path, **FUZZ_SETTINGS)


@pytest.fixture
def users(server: ServerProcess) -> Iterator[Users]:
    yield from user_factory(server)


def chat_still_works(alice: Peer, bob: Peer) -> None:
    """A message from alice reaches bob once, alice gets its ack and bob's delivered receipt."""
    sent = alice.send(bob.uid, {"text": "after the fuzz"})
    ack = alice.wait_ack(sent, TIMEOUT)
    assert ack["type"] == "ack", ack
    [got] = bob.wait_messages(1, TIMEOUT)
    assert (got["from"], got["body"], got["client_id"]) == (alice.uid, {"text": "after the fuzz"}, sent)
    receipts = alice.wait_for(lambda: [r for r in alice.receipts if got["id"] in r["ids"]], TIMEOUT)
    assert receipts[0]["status"] == "delivered"


@pytest.mark.timeout(SECONDS + 120)  # the fuzz time, plus starting, checking and stopping the server
def test_mutated_mqtt_from_many_connections_leaves_the_server_up_and_chatting(
        server: ServerProcess, users: Users, capsys: pytest.CaptureFixture[str]) -> None:
    seed = int(os.environ.get("CHATMQ_FUZZ_SEED") or secrets.randbits(48))
    with capsys.disabled():
        print(f"\nfuzz: seed {seed} (CHATMQ_FUZZ_SEED={seed} runs the same cases), {SECONDS:g} s, "
              f"at most {MAX_CASES} cases")
    fuzzer, peer = users(connect=False), users(connect=False)
    me = Identity(fuzzer.uid, fuzzer.access_token, peer.uid)
    t0 = time.monotonic()
    tally = asyncio.run(fuzz(seed, me, server.mqtt_port, SECONDS, MAX_CASES,
                             None if ONLY_CASE is None else int(ONLY_CASE)))
    with capsys.disabled():
        print(f"fuzz: {tally.cases} cases, {tally.sent:,} bytes sent, {tally.answers} packets answered, "
              f"{tally.unreachable} connections refused, {time.monotonic() - t0:.1f} s")
    recent = "\n".join(case.describe() for case in tally.recent)
    where = f"seed {seed}; the last cases run:\n{recent}"

    assert server.proc is not None
    assert server.proc.poll() is None, f"the server died ({where})\n{server.log()[-4000:]}"
    assert tally.cases > 0
    assert tally.unreachable < tally.cases, f"the server refused every connection ({where})"
    assert not tally.bad_answers, "\n".join(tally.bad_answers[:5])
    chat_still_works(users(), users())
    log = server.log()
    if "Traceback" in log:
        at = log.index("Traceback")
        before = [int(n) for n in reversed(re.findall(r"fuzz-(\d+)", log[max(0, at - 600):at]))]
        suspects = list(dict.fromkeys(before))[:3]  # the nearest first
        named = "\n".join(make_case(seed, n, me).describe(4096) for n in suspects)
        pytest.fail(f"the server logged a traceback ({where})\ncases named near it (CHATMQ_FUZZ_CASE=<n> runs one):"
                    f"\n{named}\n{log[max(0, at - 2000):][:8000]}")


def refused_and_reset(port: int, user_id: str, rounds: int, at_once: int = 30) -> None:
    """``rounds`` times: ``at_once`` connections each send a CONNECT with a bad token, then all reset
    together while the server is still answering them (found by the fuzz run with seed 20261204: the
    refusal's close raised ConnectionResetError out of the connection's task, a traceback)."""
    for r in range(rounds):
        socks = [socket.create_connection(("127.0.0.1", port), source_address=(FUZZ_SOURCE, 0))
                 for _ in range(at_once)]
        for i, sock in enumerate(socks):
            sock.sendall(encode_connect(f"reset-{r}-{i}", username=user_id, password="not-a-token"))
        time.sleep(0.001 * (r % 5))
        for sock in socks:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()


SHORT_DELAYS = {"CHATMQ_AUTH_FAILURE_DELAY": "0.05", "CHATMQ_AUTH_FAILURE_DELAY_MAX": "0.2"}
"""Refused CONNECTs answered within 0.2 s, so that every refusal is written while the test looks."""


@pytest.fixture
def quick_refusals(tmp_path: Path) -> Iterator[ServerProcess]:
    yield from serve(tmp_path, **FUZZ_SETTINGS, **SHORT_DELAYS)


@pytest.fixture
def quick_users(quick_refusals: ServerProcess) -> Iterator[Users]:
    yield from user_factory(quick_refusals)


def test_a_refused_connect_reset_by_the_client_logs_no_traceback(quick_refusals: ServerProcess,
                                                                 quick_users: Users) -> None:
    server = quick_refusals
    refused_and_reset(server.mqtt_port, quick_users(connect=False).uid, 20)
    time.sleep(1.0)  # the longest refusal delay is 0.2 s
    log = server.log()
    server.log_path.write_text("")  # the harness's own check at the end is this test's, not a second failure
    assert "Traceback" not in log, log[max(0, log.find("Traceback") - 1000):][:3000]

