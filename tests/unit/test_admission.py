"""Who may open an MQTT connection (``chatmq.broker.admission``): node and per-address connection
limits, the per-address connect rate, and the failed-login back-off."""

from __future__ import annotations

import pytest

from chatmq.broker.admission import FAILURE_MEMORY, AddressGate, ConnectionPolicy, Refusal
from chatmq.core.settings import Settings


def test_connections_past_the_node_limit_are_refused_until_one_ends() -> None:
    gate = AddressGate(ConnectionPolicy(max_connections=2))
    assert gate.admit("10.0.0.1", now=0) is None
    assert gate.admit("10.0.0.2", now=0) is None
    assert gate.admit("10.0.0.3", now=0) is Refusal.NODE_FULL
    gate.release("10.0.0.1")
    assert gate.admit("10.0.0.3", now=0) is None
    assert gate.connections == 2


def test_one_address_past_its_connection_limit_is_refused_while_others_connect() -> None:
    gate = AddressGate(ConnectionPolicy(max_connections=100, max_connections_per_address=3))
    assert [gate.admit("10.0.0.1", now=0) for _ in range(4)] == [None, None, None, Refusal.ADDRESS_FULL]
    assert gate.admit("10.0.0.2", now=0) is None
    gate.release("10.0.0.1")
    assert gate.admit("10.0.0.1", now=0) is None


def test_a_connect_flood_from_one_address_is_refused_past_its_burst_and_rate() -> None:
    gate = AddressGate(ConnectionPolicy(max_connections=1000, connect_rate_per_address=2.0,
                                        connect_burst_per_address=5))
    verdicts = [gate.admit("10.0.0.1", now=100.0) for _ in range(7)]
    assert verdicts == [None] * 5 + [Refusal.CONNECT_RATE] * 2
    assert gate.admit("10.0.0.2", now=100.0) is None  # another address is not affected
    assert gate.admit("10.0.0.1", now=100.6) is None  # refilled at 2 per second
    assert gate.connections == 7  # refused ones are not counted


def test_failed_logins_from_one_address_wait_twice_as_long_each_time_up_to_the_max() -> None:
    gate = AddressGate(ConnectionPolicy(auth_failure_delay=0.5, auth_failure_delay_max=4.0))
    delays = [gate.auth_failed("10.0.0.1", now=10.0 + i) for i in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert gate.auth_failed("10.0.0.2", now=16.0) == 0.5  # counted per address
    assert gate.auth_failed("10.0.0.1", now=15.0 + FAILURE_MEMORY + 1) == 0.5  # forgotten after a quiet minute


def test_no_failure_delay_when_it_is_off() -> None:
    assert AddressGate(ConnectionPolicy(auth_failure_delay=0.0)).auth_failed("10.0.0.1", now=0) == 0.0


def test_the_address_table_stays_bounded_when_many_addresses_come_and_go() -> None:
    gate = AddressGate(ConnectionPolicy(max_connections=10**6, connect_rate_per_address=10.0,
                                        connect_burst_per_address=1))
    for i in range(20_000):
        address = f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"
        assert gate.admit(address, now=float(i)) is None
        gate.release(address)
    assert gate.tracked() <= 4097


def test_the_node_limit_defaults_to_the_open_file_limit_less_a_reserve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("chatmq.broker.admission.open_file_limit", lambda: 1024)
    assert ConnectionPolicy().connection_limit == 1024 - 256
    assert ConnectionPolicy(max_connections=10).connection_limit == 10


def test_the_plain_node_policy_has_no_per_address_bounds() -> None:
    settings = Settings.load(max_connections_per_address=5, connect_rate_per_address=1.0, max_packet_size=4096)
    chat, plain = ConnectionPolicy.from_settings(settings), ConnectionPolicy.from_settings(settings, per_address=False)
    assert (chat.max_connections_per_address, chat.connect_rate_per_address) == (5, 1.0)
    assert (plain.max_connections_per_address, plain.connect_rate_per_address) == (0, 0.0)
    assert plain.max_packet_size == chat.max_packet_size == 4096
