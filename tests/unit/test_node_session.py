"""``NodeSession`` (``chatmq.broker.session``): amqtt's session surface without its state machine."""

from __future__ import annotations

import gc
import weakref

from chatmq.broker.session import NodeSession


def test_state_moves_new_connected_disconnected_and_stamps_times() -> None:
    session = NodeSession()
    assert session.transitions.state == "new"
    assert not session.transitions.is_connected()
    session.transitions.connect()
    assert session.transitions.is_connected()
    assert session.last_connect_time is not None
    session.transitions.disconnect()
    assert session.transitions.state == "disconnected"
    assert session.last_disconnect_time is not None
    session.transitions.connect()
    assert session.last_disconnect_time is None


def test_amqtt_queue_helpers_see_empty_queues() -> None:
    session = NodeSession()
    session.clear_queues()
    assert session.retained_messages_count == 0
    assert session.inflight_out_count == 0
    assert repr(session) == "NodeSession(clientId=None, state=new)"


def test_an_ended_session_is_freed_at_once_without_the_cyclic_collector() -> None:
    """A session and its state made a reference cycle: every ended session waited for a full
    collection (which, with the node's frozen connections, walks every object of the node)."""
    session = NodeSession()
    session.transitions.connect()
    session.transitions.disconnect()
    gone = weakref.ref(session)
    gc.disable()
    try:
        del session
        assert gone() is None
    finally:
        gc.enable()
