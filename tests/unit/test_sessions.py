"""SessionRegistry: epochs decide between nodes."""

from chatmq.services.sessions import SessionRegistry


def ev(event: str, user: str, node: str, epoch: int) -> dict[str, object]:
    return {"event": event, "user": user, "node": node, "epoch": epoch}


def test_online_offline() -> None:
    r = SessionRegistry()
    assert r.apply(ev("online", "u1", "n1", 10))
    assert r.node_of("u1") == "n1"
    assert r.apply(ev("offline", "u1", "n1", 10))
    assert r.node_of("u1") is None


def test_late_offline_from_old_node_does_not_erase_newer_connection() -> None:
    r = SessionRegistry()
    r.apply(ev("online", "u1", "n1", 10))
    r.apply(ev("online", "u1", "n2", 20))  # takes over
    assert not r.apply(ev("offline", "u1", "n1", 10))
    assert r.node_of("u1") == "n2"


def test_stale_online_is_ignored() -> None:
    r = SessionRegistry()
    r.apply(ev("online", "u1", "n2", 20))
    assert not r.apply(ev("online", "u1", "n1", 10))
    assert r.node_of("u1") == "n2"
    assert len(r) == 1
