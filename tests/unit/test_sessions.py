"""SessionRegistry: an entry per (user, node); epochs decide within a node."""

from chatmq.core.records import Connected, Disconnected, Offline, Online
from chatmq.services.registry.sessions import SessionRegistry


def ev(event: str, user: str, node: str, epoch: int) -> Online | Offline:
    return Online(user, node, epoch) if event == "online" else Offline(user, node, epoch)


def test_online_offline() -> None:
    r = SessionRegistry()
    assert r.apply(ev("online", "u1", "n1", 10))
    assert r.node_of("u1") == "n1"
    assert r.apply(ev("offline", "u1", "n1", 10))
    assert r.node_of("u1") is None


async def test_a_users_devices_on_two_nodes_each_keep_their_entry() -> None:
    r = SessionRegistry()
    r.apply(ev("online", "u1", "n1", 10))
    r.apply(ev("online", "u1", "n2", 20))  # another device, on another node
    assert await r.user_nodes(["u1"]) == {"u1": ["n2", "n1"]}
    assert r.node_of("u1") == "n2"
    assert r.apply(ev("offline", "u1", "n1", 10))  # the device on n1 went: the one on n2 is still there
    assert await r.user_nodes(["u1"]) == {"u1": ["n2"]}
    assert not r.apply(ev("offline", "u1", "n2", 19))  # a late offline cannot erase the newer connection
    assert r.node_of("u1") == "n2"


def test_stale_online_is_ignored() -> None:
    r = SessionRegistry()
    r.apply(ev("online", "u1", "n2", 20))
    assert not r.apply(ev("online", "u1", "n2", 10))
    assert r.node_of("u1") == "n2"
    assert len(r) == 1


def conn(event: str, cid: str, who: str = "u1", node: str = "n1", ts: int = 1) -> Connected | Disconnected:
    kind = Connected if event == "connected" else Disconnected
    return kind("user", who, cid, node, "ws", ts)


def test_connection_table() -> None:
    from chatmq.services.registry.sessions import ConnectionTable

    t = ConnectionTable()
    t.apply(conn("connected", "phone", ts=1))
    t.apply(conn("connected", "laptop", ts=2))
    t.apply(conn("connected", "x", who="u2", ts=3))
    assert [c.client_id for c in t.of("u1")] == ["phone", "laptop"]
    t.apply(conn("disconnected", "phone"))
    assert [c.client_id for c in t.all()] == ["laptop", "x"]
    t.apply(conn("connected", "laptop", who="u3", ts=4))  # client id taken over by another user
    t.apply(conn("disconnected", "laptop", who="u1"))  # late disconnect of the old one
    assert [(c.id, c.transport) for c in t.of("u3")] == [("u3", "ws")]


def test_the_holder_of_a_client_id_on_another_node() -> None:
    from chatmq.core.records import NodeStarted
    from chatmq.services.registry.sessions import ConnectionTable

    t = ConnectionTable()
    t.apply(conn("connected", "phone", who="u1", node="n1", ts=1))
    t.apply(conn("connected", "phone", who="u1", node="n2", ts=2))
    holder = t.holder("phone", other_than="n2")
    assert holder is not None
    assert (holder.id, holder.node) == ("u1", "n1")
    newest = t.holder("phone")
    assert newest is not None
    assert newest.node == "n2"
    assert t.holder("laptop") is None
    t.apply(conn("disconnected", "phone", who="u2", node="n1"))  # not the holder's: changes nothing
    assert t.holder("phone", other_than="n2") is not None
    t.apply(conn("disconnected", "phone", who="u1", node="n1"))
    assert t.holder("phone", other_than="n2") is None
    t.apply(NodeStarted("n2", 9, 9))  # n2 restarted: its connections are gone
    assert t.holder("phone") is None
    assert t.all() == []
