"""The operator's console at ``/console``: server-rendered panels (fleet, analytics, drift,
labeling queue, retraining, models, inspections, settings) refreshed with htmx, charts
drawn with uPlot; both libraries are vendored under ``static/vendor`` (see its README)."""

from api.console.routes import data_router, fragments, router

__all__ = ["data_router", "fragments", "router"]
