"""Who is on a connection, and the per-identity topic ACL of the contract.

* A user may publish only to ``users/{own id}/outbox`` and subscribe (and receive)
  only ``users/{own id}/inbox``.
* A device may publish only to ``devices/{own id}/telemetry`` and ``devices/{own id}/outbox``, and
  subscribe (and receive) only ``devices/{own id}/inbox``, where the node answers a refused reading
  with an ``error`` and the cloud sends shadows and commands.
* An MQTT client id belongs to the principal whose session holds it (``may_take_over``): only the same
  user (or device) may take a held client id over; anyone else's CONNECT with it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from chatmq.core.mqtt_topics import device_inbox_topic as device_inbox_topic
from chatmq.core.mqtt_topics import device_outbox_topic as device_outbox_topic
from chatmq.core.mqtt_topics import inbox_topic as inbox_topic
from chatmq.core.mqtt_topics import outbox_topic as outbox_topic
from chatmq.core.mqtt_topics import telemetry_topic as telemetry_topic


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated connection's principal."""

    kind: Literal["user", "device"]
    id: str
    owner: str | None = None  # a device's owning user


def principal_identity(kind: str, principal: str) -> Identity | None:
    """The identity of a principal named on the bus (``kind``: ``user`` or ``device``); None for any other
    kind, or no id."""
    if not principal:
        return None
    if kind == "user":
        return Identity("user", principal)
    if kind == "device":
        return Identity("device", principal)
    return None


def own_inbox(identity: Identity) -> str:
    """The one topic ``identity`` may subscribe to: its user or device inbox."""
    return inbox_topic(identity.id) if identity.kind == "user" else device_inbox_topic(identity.id)


def may_subscribe(identity: Identity | None, topic_filter: str) -> bool:
    """Whether ``identity`` may subscribe to ``topic_filter`` (exact: no wildcards are granted)."""
    return identity is not None and topic_filter == own_inbox(identity)


def may_receive(identity: Identity | None, topic: str) -> bool:
    """Whether a message on ``topic`` may be sent to ``identity``."""
    return may_subscribe(identity, topic)


def may_publish(identity: Identity | None, topic: str) -> bool:
    """Whether ``identity`` may publish to ``topic``."""
    if identity is None:
        return False
    if identity.kind == "user":
        return topic == outbox_topic(identity.id)
    return topic in (telemetry_topic(identity.id), device_outbox_topic(identity.id))


def may_take_over(holder: Identity | None, claimant: Identity | None) -> bool:
    """Whether a CONNECT of ``claimant`` may take over the session of its client id held by ``holder``
    (a live connection or a persistent session kept for later; None: no session, or one whose owner
    nobody verified, as on the anonymous plain node). Only the same principal may: the same user, or
    the same device (a user's device is not the user, nor the other way round)."""
    if holder is None:
        return True
    return claimant is not None and claimant.kind == holder.kind and claimant.id == holder.id
