"""The operator's console: ``/console/<panel>`` pages, their HTML fragments, the JSON data
routes under ``/console/api``, and the console's static files.

A page is a shell without data (no token needed to load it); its panel is an HTML
fragment (``/console/<panel>/fragment``) that htmx loads and refreshes every
``REFRESH_S`` seconds with the token from localStorage as ``Authorization: Bearer``,
and its charts poll the JSON routes. Admin-only controls (trigger a retrain, promote,
roll back) are rendered only into fragments asked for with an admin token; the POST
routes they call check the role again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

from api.auth import Principal
from api.console import alerts_view, filters, live, models_view, schemas, views
from api.console.browse_view import browse_panel
from api.console.classes_view import classes_panel
from api.console.review_view import review_panel
from api.console.settings_view import effective_settings
from api.console.uploads_view import uploads_panel
from api.deps import (
    AUTH_RESPONSES,
    TOKEN_COOKIE,
    CurrentPrincipal,
    RegistryDep,
    SettingsDep,
    StoreDep,
)

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
REFRESH_S = 5
PANELS: dict[str, str] = {
    "fleet": "Fleet",
    "analytics": "Analytics",
    "drift": "Drift",
    "alerts": "Alerts",
    "queue": "Labeling queue",
    "retraining": "Retraining",
    "models": "Models",
    "inspections": "Inspections",
    "browse": "Dataset browser",
    "uploads": "Uploads",
    "classes": "Classes",
    "review": "Review",
    "settings": "Settings",
}
"""Panel slug -> title, in the navigation's order."""

templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters.update(
    num=filters.num,
    pct=filters.pct,
    age=filters.age,
    duration=filters.duration,
    when=filters.when,
    bytes=filters.size,
    evaluation=filters.evaluation,
    pvalue=filters.pvalue,
    version=filters.version,
)

router = APIRouter(prefix="/console", tags=["console"])
"""Pages (public shells) and static files."""
router.include_router(live.router)  # /console/events, before the /console/{panel} pages
fragments = APIRouter(prefix="/console", tags=["console"], responses=AUTH_RESPONSES)
"""The panels' HTML fragments (token needed)."""
data_router = APIRouter(prefix="/console/api", tags=["console"], responses=AUTH_RESPONSES)
"""The panels' JSON data (token needed)."""

PanelName = Literal[
    "fleet",
    "analytics",
    "drift",
    "alerts",
    "queue",
    "retraining",
    "models",
    "inspections",
    "browse",
    "uploads",
    "classes",
    "review",
    "settings",
]
RangeName = Literal["15m", "1h", "6h", "24h", "7d"]
DriftRangeName = Literal["1d", "7d", "30d", "90d"]
RangeQuery = Annotated[
    RangeName, Query(alias="range", description="How far back from now the charts reach.")
]
DriftRangeQuery = Annotated[
    DriftRangeName, Query(alias="range", description="How far back drift reports are shown.")
]
CameraQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=128, description="One camera; default every camera."),
]
BandQuery = Annotated[
    schemas.InspectionBand | None,
    Query(
        description="uncertain: in the uncertainty band; confident: at or above its upper "
        "bound; low: at or below its lower bound. Default every detection."
    ),
]
NoImageQuery = Annotated[
    bool,
    Query(
        description="Also list detections whose frame has no stored JPEG (agents send a "
        "frame's JPEG only when it has an uncertain detection)."
    ),
]
LimitQuery = Annotated[int, Query(ge=1, le=200, description="Rows per page.")]
OffsetQuery = Annotated[int, Query(ge=0, le=10_000_000, description="Rows skipped.")]


def _is_admin(principal: Principal) -> bool:
    return principal.role == "admin"


# --- static files and pages -------------------------------------------------------------------


@router.get("/static/{path:path}", include_in_schema=False)
def console_static(path: str) -> FileResponse:
    """A file under ``api/console/static`` (the console's JS/CSS and the vendored libraries)."""
    root = STATIC_DIR.resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no console file {path!r}")
    return FileResponse(target, headers={"Cache-Control": "public, max-age=300"})


@router.get("", include_in_schema=False)
def console_root() -> RedirectResponse:
    """``/console`` opens the fleet panel."""
    return RedirectResponse("/console/fleet", status_code=status.HTTP_307_TEMPORARY_REDIRECT)


@router.get("/{panel}", response_class=HTMLResponse, summary="A console page (shell)")
def console_page(request: Request, panel: PanelName, settings: SettingsDep) -> HTMLResponse:
    """The page of one panel: navigation, sign-in, filters and chart slots. Its data comes
    from ``/console/<panel>/fragment`` and ``/console/api/<panel>`` with the token."""
    query = request.url.query
    data_query = "&".join(q for q in (query, "part=charts" if panel == "analytics" else "") if q)
    return templates.TemplateResponse(
        request,
        "page.html",
        {
            "panel": panel,
            "panels": PANELS,
            "title": PANELS[panel],
            "fragment_url": f"/console/{panel}/fragment" + (f"?{query}" if query else ""),
            "data_url": f"/console/api/{panel}" + (f"?{data_query}" if data_query else ""),
            "refresh_s": REFRESH_S,
            "params": dict(request.query_params),
            "ranges": list(views.RANGES),
            "drift_ranges": list(views.DRIFT_RANGES),
            "token_cookie": TOKEN_COOKIE,
            "band": (settings.loop.uncertainty_low, settings.loop.uncertainty_high),
        },
    )


# --- JSON data --------------------------------------------------------------------------------


@data_router.get("/me", response_model=schemas.MePublic)
def read_me(principal: CurrentPrincipal) -> schemas.MePublic:
    """Who the token belongs to (the console shows it and hides admin controls otherwise)."""
    return schemas.MePublic(name=principal.name, role=principal.role)


@data_router.get("/fleet", response_model=schemas.FleetPublic)
def read_fleet(
    _principal: CurrentPrincipal, store: StoreDep, registry: RegistryDep
) -> schemas.FleetPublic:
    """One row per camera: heartbeat state and age, frames/s, inference p50/p95 (ms),
    detections per minute and uncertain share over the last 5 minutes, spool depth, and
    the model version it runs against production."""
    return views.fleet(store, model_name=registry.model_name)


def _analytics(
    store: StoreDep, range_name: RangeQuery = "1h", camera_id: CameraQuery = None
) -> Callable[..., schemas.AnalyticsPublic]:
    """``views.analytics_panel`` over the asked range and camera, to call with the parts it
    may leave out (``tables``, ``charts``): the JSON route and the fragment want different ones."""
    return functools.partial(
        views.analytics_panel, store, range_name=range_name, camera_id=camera_id
    )


AnalyticsDep = Annotated[Callable[..., schemas.AnalyticsPublic], Depends(_analytics)]


@data_router.get("/analytics", response_model=schemas.AnalyticsPublic)
def read_analytics(
    _principal: CurrentPrincipal,
    analytics: AnalyticsDep,
    part: Annotated[
        Literal["all", "charts"],
        Query(description="charts: only the series and histogram (summary, class mix empty)."),
    ] = "all",
) -> schemas.AnalyticsPublic:
    """Over the range ending now: per camera detections per minute, defect rate (share of
    frames with a detection) and uncertain share per bucket; confidence histogram (20 bins
    over [0, 1]) and class mix."""
    return analytics(tables=part == "all")


@data_router.get("/drift", response_model=schemas.DriftPublic)
def read_drift_history(
    _principal: CurrentPrincipal,
    store: StoreDep,
    settings: SettingsDep,
    range_name: DriftRangeQuery = "7d",
    camera_id: CameraQuery = None,
) -> schemas.DriftPublic:
    """Per camera, drift share and per-feature p-values over the range, with the seed's
    thresholds (drift share 0.30, p 0.05) and the newest report's link."""
    return views.drift_panel(store, settings, range_name=range_name, camera_id=camera_id)


@data_router.get("/queue", response_model=schemas.QueuePublic)
def read_queue(_principal: CurrentPrincipal, store: StoreDep) -> schemas.QueuePublic:
    """Queue size by camera and priority band, the oldest pending item, and per labeler the
    labels of the last 24 h with their rate over the time they span."""
    return views.queue_panel(store)


@data_router.get("/retraining", response_model=schemas.RetrainingPublic)
def read_retraining(
    _principal: CurrentPrincipal, store: StoreDep, settings: SettingsDep
) -> schemas.RetrainingPublic:
    """The retrain conditions, events (trigger, decision, run status, outcome, Dagster link)
    and training runs."""
    return views.retraining_panel(store, settings)


@data_router.get("/models", response_model=schemas.ModelsPublic)
def read_models(
    _principal: CurrentPrincipal, store: StoreDep, settings: SettingsDep, registry: RegistryDep
) -> schemas.ModelsPublic:
    """Registered versions with their metrics and promotion outcome, the alias history, and
    which camera runs which version."""
    return models_view.models_panel(store, settings, registry)


@data_router.get("/inspections", response_model=schemas.InspectionsPublic)
def read_inspections(
    _principal: CurrentPrincipal,
    store: StoreDep,
    settings: SettingsDep,
    camera_id: CameraQuery = None,
    band: BandQuery = None,
    include_no_image: NoImageQuery = False,
    limit: LimitQuery = 24,
    offset: OffsetQuery = 0,
) -> schemas.InspectionsPublic:
    """Detections, newest capture first, one page; ``count`` over all pages. By default only
    detections whose frame has a stored JPEG."""
    return views.inspections_panel(
        store,
        camera_id=camera_id,
        band=band,
        uncertainty_band=(settings.loop.uncertainty_low, settings.loop.uncertainty_high),
        with_jpeg_only=not include_no_image,
        limit=limit,
        offset=offset,
    )


@data_router.get("/settings", response_model=schemas.SettingsPublic)
def read_console_settings(
    _principal: CurrentPrincipal, settings: SettingsDep
) -> schemas.SettingsPublic:
    """Every loop and API setting with its effective value and source; no secrets."""
    return effective_settings(settings)


# --- fragments --------------------------------------------------------------------------------
# A panel's fragment renders what its JSON route returns (the route is the fragment's
# dependency, so both take the same query parameters), except the analytics fragment,
# which leaves the chart series to the JSON route.


def _fragment(request: Request, name: str, principal: Principal, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        f"fragments/{name}.html",
        {"is_admin": _is_admin(principal), "principal": principal, **context},
        headers={"Cache-Control": "no-store"},
    )


def _add_fragment(panel: str, read: Callable[..., BaseModel], description: str) -> None:
    """Route ``/console/<panel>/fragment``: ``read``'s answer rendered as HTML."""

    # A default, not an ``Annotated`` dependency: annotations are strings here, and FastAPI
    # resolves them in the module, where ``read`` is not.
    read_data = Depends(read)

    def fragment(
        request: Request, principal: CurrentPrincipal, data: BaseModel = read_data
    ) -> HTMLResponse:
        return _fragment(request, panel, principal, data=data)

    fragments.add_api_route(
        f"/{panel}/fragment",
        fragment,
        response_class=HTMLResponse,
        name=f"{panel}_fragment",
        description=description,
    )


_add_fragment("fleet", read_fleet, "The fleet table (HTML).")
_add_fragment(
    "drift",
    read_drift_history,
    "The newest drift report per camera with its p-values and report link (HTML).",
)
data_router.add_api_route(
    "/alerts",
    alerts_view.alerts_panel,
    methods=["GET"],
    response_model=alerts_view.AlertsPublic,
    name="read_alerts_panel",
)
_add_fragment(
    "alerts",
    alerts_view.alerts_panel,
    "Open drift alerts with acknowledge buttons, then the acknowledged ones (HTML).",
)
_add_fragment("queue", read_queue, "Queue sizes, the oldest item and labeler throughput (HTML).")
_add_fragment(
    "retraining",
    read_retraining,
    "Retrain conditions, events and training runs; the trigger for admins (HTML).",
)
_add_fragment(
    "models",
    read_models,
    "Versions, alias history and cameras; promote / roll back for admins (HTML).",
)
data_router.add_api_route("/classes", classes_panel, methods=["GET"], name="read_classes_panel")
_add_fragment(
    "classes", classes_panel, "The site's classes and their changes; edits for admins (HTML)."
)
data_router.add_api_route("/browse", browse_panel, methods=["GET"], name="read_browse_panel")
_add_fragment("browse", browse_panel, "The dataset browser's grid under its filters (HTML).")
data_router.add_api_route("/uploads", uploads_panel, methods=["GET"], name="read_uploads_panel")
_add_fragment(
    "uploads",
    uploads_panel,
    "Recent prediction batches, and one batch's images with each run's boxes (HTML).",
)
data_router.add_api_route("/review", review_panel, methods=["GET"], name="read_review_panel")
_add_fragment(
    "review",
    review_panel,
    "The audit's confident-mistake and miss rates and each labeler's throughput (HTML).",
)
_add_fragment(
    "settings",
    read_console_settings,
    "The effective configuration with each value's source (HTML).",
)


@fragments.get("/analytics/fragment", response_class=HTMLResponse)
def analytics_fragment(
    request: Request, principal: CurrentPrincipal, analytics: AnalyticsDep
) -> HTMLResponse:
    """Per-camera summary and class mix over the range (HTML)."""
    return _fragment(request, "analytics", principal, data=analytics(charts=False))


@fragments.get("/inspections/fragment", response_class=HTMLResponse)
def inspections_fragment(
    request: Request,
    principal: CurrentPrincipal,
    data: Annotated[schemas.InspectionsPublic, Depends(read_inspections)],
) -> HTMLResponse:
    """One page of detections with frame thumbnails and boxes (HTML)."""
    params = {
        "camera_id": request.query_params.get("camera_id"),
        "band": data.band,
        "include_no_image": not data.with_jpeg_only,
    }
    return _fragment(request, "inspections", principal, data=data, params=params)
