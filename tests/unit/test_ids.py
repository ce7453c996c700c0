from chatmq.core.ids import conversation_key, server_id


def test_server_ids_are_unique_and_ordered() -> None:
    ids = [server_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_conversation_key() -> None:
    assert conversation_key("ub", "ua") == conversation_key("ua", "ub") == "ua:ub"
    assert conversation_key("ua", group="g1") == "g1"
