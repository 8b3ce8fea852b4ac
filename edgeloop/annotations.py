"""A reviewed box: the one type a label has from the labeling API to the YOLO dataset.

The API validates what a labeler sends against the frame and the model's classes once
(``review_boxes``) and stores ``ReviewedBox`` rows as JSON in ``reviewed_labels.boxes``;
the dataset builder reads them back with ``REVIEWED_BOXES`` and trusts them. Boxes are
xyxy pixels of the original frame, origin top-left (as every box in edgeloop).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from edgeloop.wire import BBoxXYXY

MIN_BOX_SIDE_PX = 1.0
"""A reviewed box must be at least this wide and high, px: a thinner box has no pixels to
learn from and becomes a zero-area YOLO label."""


class ReviewedBox(BaseModel):
    """One box a person reviewed: where, and which class of the model.

    Attributes:
        bbox_xyxy: (x1, y1, x2, y2) px of the original frame, inside it, at least
            ``MIN_BOX_SIDE_PX`` wide and high.
        class_id: index of ``class_name`` in the model's class names when it was labeled.
        class_name: the class the reviewer chose (what the dataset builder maps by).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    bbox_xyxy: BBoxXYXY = Field(description="(x1, y1, x2, y2) px of the original frame.")
    class_id: int = Field(ge=0, description="Index of class_name in the model's classes.")
    class_name: str = Field(min_length=1, max_length=64)


REVIEWED_BOXES: TypeAdapter[list[ReviewedBox]] = TypeAdapter(list[ReviewedBox])
"""Parses and dumps the JSON list stored in ``reviewed_labels.boxes``."""


@dataclass(frozen=True)
class BoxProblem:
    """Why one proposed box was refused: its index, the field at fault and a sentence."""

    index: int
    field: str
    message: str


class InvalidBoxesError(ValueError):
    """Some boxes of a label were refused; ``problems`` lists every one of them."""

    def __init__(self, problems: Sequence[BoxProblem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"box {p.index}: {p.message}" for p in self.problems))


def review_boxes(
    boxes: Sequence[tuple[tuple[float, float, float, float], str]],
    *,
    width: int,
    height: int,
    class_names: Sequence[str],
) -> list[ReviewedBox]:
    """Check proposed ``(bbox_xyxy, class_name)`` pairs against the frame and the classes.

    Args:
        boxes: (x1, y1, x2, y2) px with x1 <= x2, y1 <= y2, all >= 0 (``BBoxXYXY``), and a
            class name.
        width / height: the original frame's size, px.
        class_names: the model's class names, index = class id.

    Returns:
        The boxes as ``ReviewedBox`` (class_id looked up from the name), in order.

    Raises:
        InvalidBoxesError: naming every box that lies outside the frame, is thinner than
            ``MIN_BOX_SIDE_PX``, or names an unknown class.
    """
    problems: list[BoxProblem] = []
    reviewed: list[ReviewedBox] = []
    for i, (bbox, class_name) in enumerate(boxes):
        x1, y1, x2, y2 = bbox
        if x2 > width or y2 > height:
            problems.append(
                BoxProblem(
                    i, "bbox_xyxy", f"box {list(bbox)} lies outside the {width}x{height} px frame"
                )
            )
        elif x2 - x1 < MIN_BOX_SIDE_PX or y2 - y1 < MIN_BOX_SIDE_PX:
            problems.append(
                BoxProblem(i, "bbox_xyxy", f"box {list(bbox)} is narrower or shorter than 1 px")
            )
        if class_name not in class_names:
            problems.append(
                BoxProblem(
                    i,
                    "class_name",
                    f"unknown class {class_name!r}; known classes: {list(class_names)}",
                )
            )
            continue
        reviewed.append(
            ReviewedBox(
                bbox_xyxy=bbox, class_id=list(class_names).index(class_name), class_name=class_name
            )
        )
    if problems:
        raise InvalidBoxesError(problems)
    return reviewed
