"""The REST API (FastAPI) of the public contract, under ``/api/v1``.

``create_app`` builds the application from a ``Store``, a ``TokenService`` and a
``Notifier`` (how group events reach members' inboxes).
"""

from chatmq.services.api.app import create_app
from chatmq.services.api.notifier import Notifier

__all__ = ["Notifier", "create_app"]
