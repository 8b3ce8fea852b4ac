"""The console's classes panel (issue 18): the site's classes and their change log, with
add / rename / merge / retire forms for admins that post to ``/api/classes`` (the routes
check the role again; ``api.routes.classes``)."""

from __future__ import annotations

from api.deps import CurrentPrincipal, RegistryDep, StoreDep
from api.routes.classes import ClassesPublic, read_classes

PANEL_CHANGES = 20
"""Change-log entries the panel shows, newest first."""


def classes_panel(
    principal: CurrentPrincipal, store: StoreDep, registry: RegistryDep
) -> ClassesPublic:
    """Every class by id (active, merged, retired), the active names, and the newest
    ``PANEL_CHANGES`` changes (who, why)."""
    return read_classes(principal, store, registry, changes=PANEL_CHANGES)
