"""The rules of presence: the offline debounce and who is shown what (``chatmq.services.chat.presence``)."""

from __future__ import annotations

from chatmq.services.chat.presence import Debounce, Shown, view
from chatmq.services.store.base import PresenceState


def test_offline_is_due_only_once_the_grace_passed() -> None:
    d = Debounce(grace_ms=5000)
    d.went_away("ua", at=1000)
    assert d.due(5999) == []
    assert d.due(6000) == [("ua", 1000)]
    assert d.due(99_999) == []  # taken off the list once due


def test_a_reconnect_within_the_grace_is_no_change() -> None:
    d = Debounce(grace_ms=5000)
    d.went_away("ua", at=1000)
    assert d.came_back("ua") is True
    assert d.due(60_000) == []


def test_coming_online_without_having_gone_away_is_a_change() -> None:
    d = Debounce(grace_ms=5000)
    assert d.came_back("ua") is False


def test_the_grace_counts_from_the_first_device_gone() -> None:
    d = Debounce(grace_ms=5000)
    d.went_away("ua", at=1000)
    d.went_away("ua", at=4000)  # another node's last device of the user
    assert d.due(6000) == [("ua", 1000)]


def test_each_user_has_its_own_grace() -> None:
    d = Debounce(grace_ms=5000)
    d.went_away("ua", at=1000)
    d.went_away("ub", at=3000)
    assert d.due(7000) == [("ua", 1000)]
    assert len(d) == 1


ONLINE = PresenceState("online", 1234, "contacts")
HIDDEN = PresenceState("away", 1234, "nobody")


def test_a_mutual_contact_sees_state_and_last_seen() -> None:
    assert view("ua", "ub", True, ONLINE) == Shown("ub", "online", 1234)


def test_a_non_contact_sees_nothing() -> None:
    assert view("ua", "ub", False, ONLINE) == Shown("ub", None, None)


def test_visibility_nobody_shows_offline_never_seen_to_contacts() -> None:
    assert view("ua", "ub", True, HIDDEN) == Shown("ub", "offline", None)


def test_a_user_sees_its_own_state_even_when_hidden() -> None:
    assert view("ub", "ub", False, HIDDEN) == Shown("ub", "away", 1234)
