"""``/reports/...``: the HTML reports under ``<data_dir>/reports`` (Evidently drift reports).

Served by a route rather than a bare static mount so the token is checked; the labeling
page sets the token cookie, so links to reports open in the same browser.
"""

from __future__ import annotations

from fastapi import HTTPException, status
from fastapi.responses import FileResponse

from api.deps import CurrentPrincipal, SettingsDep, secured_router

router = secured_router("/reports", tag="reports", store=False)


@router.get("/{path:path}", response_class=FileResponse)
def read_report(path: str, _principal: CurrentPrincipal, settings: SettingsDep) -> FileResponse:
    """A file under the reports folder (HTML, JSON, images); 404 outside it or when absent."""
    root = settings.loop.reports_dir.resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no report {path!r}")
    return FileResponse(target)
