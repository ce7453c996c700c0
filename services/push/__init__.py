"""Push notifications for offline users (issue 5).

* ``records``: the ``PushRecord`` (``chatmq.core.records``) of an inbox envelope, what rides on ``chat.push``;
* ``publisher``: ``PushPublisher``, the routers' hook (records for offline recipients);
* ``provider``: the ``PushProvider`` interface, ``Outcome``, ``Notification``;
* ``fcm``: ``FcmProvider`` (firebase-admin); ``webhook``: ``WebhookProvider`` (httpx);
* ``worker``: ``PushWorker``, sends with retries and removes dead tokens.

``provider_from_settings`` picks the provider ``push_provider`` names; ``push_worker`` makes the worker.
"""

from __future__ import annotations

from chatmq.core.bus.base import Bus
from chatmq.core.errors import ConfigError
from chatmq.core.settings import Settings
from chatmq.services.push.provider import PushProvider
from chatmq.services.push.worker import PushWorker
from chatmq.services.store.base import Store


def provider_from_settings(settings: Settings) -> PushProvider | None:
    """The provider ``settings.push_provider`` names (None for ``none``); ``ConfigError`` when its
    settings are missing or bad (an unreadable service account), or firebase-admin is not installed."""
    if settings.push_provider == "webhook":
        from chatmq.services.push.webhook import WebhookProvider

        assert settings.push_webhook_url is not None  # Settings checks it
        secret = settings.push_webhook_secret
        return WebhookProvider(settings.push_webhook_url, secret=secret.get_secret_value() if secret else None)
    if settings.push_provider == "fcm":
        try:
            from chatmq.services.push.fcm import FcmProvider
        except ImportError as exc:
            raise ConfigError(f"push_provider = fcm needs firebase-admin: pip install 'chatmq[push]' ({exc})") from exc
        assert settings.fcm_credentials is not None  # Settings checks it
        return FcmProvider(settings.fcm_credentials, url=settings.fcm_url)
    return None


def push_worker(bus: Bus, store: Store, settings: Settings) -> PushWorker | None:
    """The ``PushWorker`` the settings ask for (None when ``push_provider`` is ``none``)."""
    provider = provider_from_settings(settings)
    if provider is None:
        return None
    return PushWorker(bus, store, provider, ttl=settings.push_ttl, max_attempts=settings.push_max_attempts)
