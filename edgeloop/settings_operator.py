"""The loop settings that the operator's features read: drift alerts' webhook
(``edgeloop.alerts``), CLIP text search and tag prompts (``edgeloop.embeddings``,
``api/routes/tags.py``) and the grid review's audit sample (``edgeloop.audit``).
``edgeloop.settings.LoopSettings`` takes them by inheritance, under its own ``EDGELOOP_``
prefix; they live here to keep that module readable.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings

from edgeloop.audit import AUDIT_SHARE


class OperatorSettings(BaseSettings):
    """Alert delivery and search (``EDGELOOP_ALERT_*``, ``EDGELOOP_CLIP_*``,
    ``EDGELOOP_TAG_*``); read through ``LoopSettings``."""

    alert_webhook_url: str | None = Field(
        None,
        description=(
            "Where drift alerts are POSTed (a generic JSON receiver, or Alertmanager-compatible "
            "receivers such as a chat bridge); unset: alerts are kept and shown in the console "
            "only."
        ),
    )
    alert_webhook_format: Literal["alertmanager", "json"] = Field(
        "alertmanager",
        description=(
            "The webhook body: alertmanager (Alertmanager's webhook receiver format, version "
            "4) or json (edgeloop's own: {'alerts': [...]}, the /api/alerts rows)."
        ),
    )
    alert_webhook_timeout_s: float = Field(
        5.0, gt=0, le=120, description="Timeout of one webhook POST, seconds."
    )
    alert_webhook_attempts: int = Field(
        3,
        ge=1,
        le=10,
        description=(
            "Tries per delivery (exponential back-off between them); after the last the alert "
            "is marked failed with the error, and is not sent again."
        ),
    )
    alert_class_mix_shift: float = Field(
        0.2,
        gt=0,
        le=1,
        description=(
            "Raise a class_mix alert when a camera's detection class mix in the week after a "
            "production promotion differs from the week before by more than this total "
            "variation distance (half the sum of the class shares' absolute changes, [0, 1])."
        ),
    )
    clip_model: str | None = Field(
        None,
        description=(
            "OpenCLIP architecture (e.g. ViT-B-32); unset means the offline MobileNetV2 embedder."
        ),
    )
    clip_pretrained: str | None = Field(
        None, description="OpenCLIP pretrained tag or a local checkpoint path."
    )
    tag_prompts: list[str] = Field(
        ["a person walking", "a person lying on the floor", "a person carrying a box"],
        description=(
            "Tag prompts (JSON list): with an OpenCLIP embedder, a crop is suggested the tag "
            "of its best-matching prompt when the cosine score reaches tag_prompt_min_score."
        ),
    )
    tag_prompt_min_score: float = Field(
        0.25, ge=-1, le=1, description="Least CLIP cosine score of a suggested prompt tag."
    )
    audit_share: float = Field(
        AUDIT_SHARE,
        ge=0,
        le=1,
        description=(
            "Share of frames audited (edgeloop.audit: chosen by a hash of the frame key): their "
            "confident detections (at or above uncertainty_high) and, when they have none, the "
            "frame itself go to the grid review's audit source. Agents send the JPEG of frames "
            "in their own sample (EDGELOOP_AGENT_AUDIT_SHARE): keep theirs at least this high."
        ),
    )
