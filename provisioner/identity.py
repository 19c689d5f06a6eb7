"""Identity: how the tool recognises its own objects in any Metabase, without local state.

A managed card carries `"provisioner.key": "<dashboard key>/<card key>"` in its `visualization_settings`
(Metabase keeps unknown settings and never shows them; `POST /api/card` drops a client `entity_id`). A
dashboard is recognised by the managed cards on it and by its filter ids, derived from the dashboard and
filter keys. The same YAML yields the same ids on every machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from provisioner.metabase.models import Dashboard

KEY_SETTING = "provisioner.key"  # in a managed card's visualization_settings: "<dashboard key>/<card key>"


def card_identity(dashboard_key: str, card_key: str) -> str:
    """The identity a managed card carries in Metabase (`visualization_settings["provisioner.key"]`)."""
    return f"{dashboard_key}/{card_key}"


def identity_of(card: Any) -> str | None:
    """The identity of a Metabase card this tool manages; None for cards people made."""
    settings = getattr(card, "visualization_settings", None) or {}
    value = settings.get(KEY_SETTING)
    return value if isinstance(value, str) and "/" in value else None


def parameter_id(dashboard_key: str, filter_key: str) -> str:
    """The deterministic dashboard parameter id of a filter."""
    return hashlib.sha256(f"filter:{dashboard_key}/{filter_key}".encode()).hexdigest()[:8]


def dashboard_key_of(dashboard: Dashboard, keys_by_parameter_id: Mapping[str, str]) -> str | None:
    """The key of a managed dashboard: from its managed cards, else from its filter ids; None if not ours."""
    for dashcard in dashboard.dashcards:
        ident = identity_of(dashcard.card)
        if ident is not None:
            return ident.split("/", 1)[0]
    for param in dashboard.parameters:
        if param.id in keys_by_parameter_id:
            return keys_by_parameter_id[param.id]
    return None
