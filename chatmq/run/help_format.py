"""How ``--help`` shows options: a flag takes no value, so it shows no type.

typer's rich help prints ``<bool>`` in the type column of every flag (``--ws``, ``--help``)
although its plain help leaves flags untyped; ``flags_without_type()`` makes the rich help do
the same. Called once by the ``chatmq`` CLI before any help is shown.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperOption

_original = TyperOption.display_type_rich


def _display_type_rich(self: TyperOption, ctx: Any) -> str | None:  # ctx: typer's own click Context
    return None if self.is_flag else _original(self, ctx)


def flags_without_type() -> None:
    """Leave the type column of flags empty in every command's rich help (idempotent)."""
    TyperOption.display_type_rich = _display_type_rich  # type: ignore[method-assign]
