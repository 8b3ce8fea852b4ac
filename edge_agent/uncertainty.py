"""The uncertainty band the agent flags detections with, and where that band came from.

A detection is uncertain when ``low < confidence < high``; its frame then travels with a
JPEG for the labeling queue. The band is the loop host's (``EDGELOOP_UNCERTAINTY_LOW/HIGH``,
sent with the production model and cached with it), unless this agent's
``EDGELOOP_AGENT_UNCERTAINTY_LOW/HIGH`` override it locally; a model that came with no
band (a local model file, or an API that sends none) gets ``edgeloop.rules``' default.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.model_sync import ModelFile
from edge_agent.settings import AgentSettings
from edgeloop.rules import UNCERTAINTY_HIGH, UNCERTAINTY_LOW

BAND_FROM_LOOP_HOST = "loop host"
BAND_LOCAL_OVERRIDE = "local override"
BAND_DEFAULT = "default (no model info)"


@dataclass(frozen=True)
class UncertaintyBand:
    """The band a detection is uncertain in: ``low < confidence < high``, bounds in [0, 1].

    Attributes:
        low, high: the exclusive bounds.
        source: ``"loop host"`` (sent with the production model: the loop host's
            ``EDGELOOP_UNCERTAINTY_LOW/HIGH``), ``"local override"`` (this agent's
            ``EDGELOOP_AGENT_UNCERTAINTY_LOW/HIGH``) or ``"default (no model info)"``
            (``edgeloop.rules``' band: a local model file, or an API that sends no band).
    """

    low: float
    high: float
    source: str

    def __str__(self) -> str:
        return f"{self.low:g}–{self.high:g}, {self.source}"


def uncertainty_band(model: ModelFile, settings: AgentSettings) -> UncertaintyBand:
    """The band to flag ``model``'s detections with: the local override when set, else the
    loop host's band that came with the model, else ``edgeloop.rules``' default."""
    if settings.uncertainty_override is not None:
        return UncertaintyBand(*settings.uncertainty_override, BAND_LOCAL_OVERRIDE)
    if model.uncertainty_band is not None:
        return UncertaintyBand(*model.uncertainty_band, BAND_FROM_LOOP_HOST)
    return UncertaintyBand(UNCERTAINTY_LOW, UNCERTAINTY_HIGH, BAND_DEFAULT)
