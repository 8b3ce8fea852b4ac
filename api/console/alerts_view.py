"""The console's alerts panel: open drift alerts first (acknowledge buttons for labelers
and admins), then the recent others with who acknowledged them and their webhook delivery.
Its data route is ``/console/api/alerts``; the alerts themselves are ``/api/alerts``."""

from __future__ import annotations

from api.deps import CurrentPrincipal, StoreDep
from api.routes.alerts import AlertPublic, AlertsPublic
from edgeloop.store import alerts

RECENT = 50
"""How many acknowledged or resolved alerts the panel lists under the open ones."""


def alerts_panel(_principal: CurrentPrincipal, store: StoreDep) -> AlertsPublic:
    """Every open alert, then the ``RECENT`` newest acknowledged or resolved ones."""
    with store.connect() as con:
        open_rows = alerts.list_alerts(con=con, status="open", limit=500)
        others = [
            row
            for row in alerts.list_alerts(con=con, limit=len(open_rows) + RECENT)
            if row["status"] != "open"
        ]
    return AlertsPublic(
        open_count=len(open_rows),
        alerts=[AlertPublic(**row) for row in [*open_rows, *others[:RECENT]]],
    )
