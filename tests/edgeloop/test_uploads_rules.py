"""The uploads' pure rules: two runs compared per image (``edgeloop.uploads.compare``), an
uploaded file's name reduced to a safe base name (``edgeloop.uploads.sanitise_name``), and
bytes Pillow cannot identify refused as not an image."""

from __future__ import annotations

import pytest

from edgeloop.uploads import (
    UploadedFile,
    UploadLimits,
    UploadRejectedError,
    check_images,
    sanitise_name,
)
from edgeloop.uploads.compare import compare, iou, match


def det(image: int, class_id: int, conf: float, box: tuple[float, float, float, float]) -> dict:
    x1, y1, x2, y2 = box
    return {"image_index": image, "class_id": class_id, "confidence": conf} | dict(
        x1=x1, y1=y1, x2=x2, y2=y2
    )


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_match_is_greedy_by_confidence_same_class_and_one_to_one() -> None:
    a = [
        det(0, 0, 0.6, (0, 0, 10, 10)),
        det(0, 0, 0.9, (1, 0, 11, 10)),  # taken first: gets the better-overlapping B box
        det(0, 1, 0.8, (100, 100, 110, 110)),  # class 1: B has only a class-0 box there
    ]
    b = [det(0, 0, 0.7, (1, 0, 11, 10)), det(0, 0, 0.5, (100, 100, 110, 110))]
    assert match(a, b) == [1.0]  # the 0.6 box finds its B box already matched


def test_match_needs_iou_at_least_half() -> None:
    a = [det(0, 0, 0.9, (0, 0, 10, 10))]
    assert match(a, [det(0, 0, 0.9, (0, 0, 10, 20))]) == [0.5]  # exactly 0.5 counts
    assert match(a, [det(0, 0, 0.9, (0, 0, 10, 21))]) == []


def test_compare_per_image() -> None:
    a = [det(0, 0, 0.9, (0, 0, 10, 10)), det(0, 0, 0.5, (50, 50, 60, 60))]
    b = [det(0, 0, 0.7, (0, 0, 10, 10)), det(1, 1, 0.4, (0, 0, 5, 5))]
    rows = compare([0, 1, 2], a, b)
    assert [(r.count_a, r.count_b, r.matched, r.only_a, r.only_b) for r in rows] == [
        (2, 1, 1, 1, 0),
        (0, 1, 0, 0, 1),
        (0, 0, 0, 0, 0),
    ]
    assert rows[0].mean_confidence_a == pytest.approx(0.7)
    assert rows[0].mean_confidence_b == pytest.approx(0.7)
    assert rows[0].mean_iou == 1.0
    assert (rows[1].mean_confidence_a, rows[1].mean_iou) == (None, None)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bus.jpg", "bus.jpg"),
        ("photos/2026/bus.jpg", "bus.jpg"),
        ("..\\..\\windows\\bus.jpg", "bus.jpg"),
        ("../", "image-3.jpg"),
        ("caf\u00e9 <script>.jpg", "caf_ _script_.jpg"),
        ("x" * 300 + ".jpg", "x" * 124 + ".jpg"),
    ],
)
def test_sanitise_name(name: str, expected: str) -> None:
    assert sanitise_name(name, 3) == expected


@pytest.mark.parametrize("raised", [None, ModuleNotFoundError("No module named 'pi_heif'")])
def test_bytes_pillow_cannot_identify_are_not_an_image(
    raised: Exception | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 422 that names the file, with Pillow's own refusal and with the error ultralytics'
    ``Image.open`` wrapper raises in a process that imported it (it reaches for pi-heif)."""
    from PIL import Image

    if raised is not None:

        def wrapper(*_args: object, **_kwargs: object) -> Image.Image:
            raise raised

        monkeypatch.setattr(Image, "open", wrapper)
    with pytest.raises(UploadRejectedError, match=r"notes\.txt: not an image") as refused:
        check_images([UploadedFile("notes.txt", b"plain text, not pixels")], UploadLimits())
    assert refused.value.status_code == 422
