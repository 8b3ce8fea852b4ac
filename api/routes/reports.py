"""``/reports/...``: the loop's HTML reports (Evidently drift reports), object keys under
``reports/`` in the data folder or object storage (``LoopSettings.stored_file``), so any
API replica serves any report.

Served by a route rather than a bare static mount so the token is checked; the labeling
page sets the token cookie, so links to reports open in the same browser.
"""

from __future__ import annotations

from fastapi import HTTPException, status
from fastapi.responses import FileResponse

from api.deps import CurrentPrincipal, SettingsDep, secured_router
from edgeloop.objects import ObjectStoreUnavailableError, check_key
from edgeloop.settings import REPORTS_PREFIX

router = secured_router("/reports", tag="reports", store=False)


@router.get("/{path:path}", response_class=FileResponse)
def read_report(path: str, _principal: CurrentPrincipal, settings: SettingsDep) -> FileResponse:
    """A stored report (HTML, JSON, images); 404 for a key outside ``reports/`` or absent,
    503 when the object store cannot be reached."""
    try:
        target = settings.loop.stored_file(check_key(REPORTS_PREFIX + path))
    except ValueError:
        target = None
    except ObjectStoreUnavailableError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
    if target is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no report {path!r}")
    return FileResponse(target)
