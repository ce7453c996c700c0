"""The MQTT topic names of the contract (docs/contract.md), one place for the broker's ACL and the SDK:
a user reads ``users/{id}/inbox`` and writes ``users/{id}/outbox``; a device writes
``devices/{id}/telemetry`` and ``devices/{id}/outbox`` and reads ``devices/{id}/inbox``."""

from __future__ import annotations


def inbox_topic(user_id: str) -> str:
    return f"users/{user_id}/inbox"


def outbox_topic(user_id: str) -> str:
    return f"users/{user_id}/outbox"


def telemetry_topic(device_id: str) -> str:
    return f"devices/{device_id}/telemetry"


def device_inbox_topic(device_id: str) -> str:
    return f"devices/{device_id}/inbox"


def device_outbox_topic(device_id: str) -> str:
    return f"devices/{device_id}/outbox"
