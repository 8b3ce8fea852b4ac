"""A fake detector for the agent's unit tests: one box per frame, no model."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from edge_agent.detectors import Detector
from edgeloop.wire import Detection


class FakeDetector(Detector):
    """One detection per frame, bbox (1, 2, 30, 40) px, class ``person``.

    Args:
        confidences: confidence of call 0, 1, 2, ... cycling (``(0.9, 0.5)``: confident on
            even calls, inside the default uncertainty band (0.4, 0.7) on odd ones).
        delay_s: sleep per call, s. version: the model version it reports.
    """

    def __init__(
        self,
        confidences: Sequence[float] = (0.9,),
        *,
        delay_s: float = 0.0,
        version: str = "fake-1",
    ) -> None:
        self.calls = 0
        self.confidences = tuple(confidences)
        self.delay_s = delay_s
        self._version = version

    @property
    def class_names(self) -> list[str]:
        return ["person"]

    @property
    def version(self) -> str:
        return self._version

    def detect(self, image: np.ndarray) -> list[Detection]:
        conf = self.confidences[self.calls % len(self.confidences)]
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        return [
            Detection(
                bbox_xyxy=(1, 2, 30, 40),
                class_id=0,
                class_name="person",
                confidence=conf,
                uncertain=0.4 < conf < 0.7,
            )
        ]
