"""A model's class head against the site's classes (issue 18), for training and evaluation.

The site's classes change (``edgeloop.store.classes``): added, renamed, merged, retired.
A dataset version's ``names`` are the active classes; the production model keeps the
names it was trained with. Two places must line the two up:

- **Training** (``current_names``): ultralytics builds the candidate with the dataset's
  ``nc`` and copies the production head's class rows by name (``cls_remap``, ultralytics
  >= 8.4: ``BaseModel._remap_cls_by_names``), every other weight with a matching shape; a
  class with no row (a new one) starts from ultralytics' prior. Giving production's
  classes their current names first makes a renamed or merged class keep its row.
- **Evaluation** (``production_in_classes``): ultralytics' standalone validation of a
  model with fewer classes than the data drops the labels of the classes it lacks, and
  matches predictions to labels by index. So production is scored through a copy of its
  weights whose head lists the dataset's classes (rows copied by current name; a class it
  never had gets a row that never fires): it predicts exactly what production predicts on
  the shared classes, and scores 0 on new classes over the same labels as the candidate.

Two production classes merged into one have one row in a head over the current classes:
ultralytics' name lookup keeps the later of the two, so production is scored (and the
candidate starts) with that class's row; the other's predictions are not counted.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

NEVER_LOGIT = -1e4
"""The bias of a class row production never had: sigmoid(-1e4) = 0, below any confidence floor."""


def current_names(names: Mapping[int, str], class_map: Mapping[str, str | None]) -> dict[int, str]:
    """A model's ``names`` (index -> name) with each name replaced by its class's current
    one (``edgeloop.store.classes.name_map``); a retired or unknown name is kept (it matches
    no dataset class)."""
    return {i: class_map.get(name) or name for i, name in names.items()}


def new_classes(
    model_names: Sequence[str], class_names: Sequence[str], class_map: Mapping[str, str | None]
) -> list[str]:
    """The dataset's classes that a model with ``model_names`` does not have under any of
    their names (by ``class_map``), in dataset order."""
    have = set(current_names(dict(enumerate(model_names)), class_map).values())
    return [name for name in class_names if name not in have]


def production_in_classes(
    yolo: Any,
    pt_path: Path,
    class_names: Sequence[str],
    class_map: Mapping[str, str | None],
    *,
    out: Path,
) -> Path:
    """``pt_path`` itself when its classes, by current name, are ``class_names`` in order;
    otherwise a copy written to ``out`` whose head has one row per class of
    ``class_names``: production's row for each class it had (by current name), and a row
    that never fires (``NEVER_LOGIT``) for each class it lacks. Boxes and every other
    layer are production's.

    Args:
        yolo: the ``ultralytics.YOLO`` class (``assets.yolo.load_yolo``).
        class_names: the dataset's names, index = YOLO class id.
        class_map: every name a class has had -> its current name (None: retired).
    """
    from ultralytics.nn.tasks import DetectionModel

    model = yolo(str(pt_path))
    source = model.model
    mapped = current_names(source.names, class_map)
    if list(mapped.values()) == list(class_names):
        return pt_path
    source.names = mapped  # only in memory: ultralytics copies head rows by these names
    head_model = DetectionModel(copy.deepcopy(source.yaml), nc=len(class_names), verbose=False)
    head_model.names = dict(enumerate(class_names))
    head_model.load(source, verbose=False)
    missing = [i for i, name in enumerate(class_names) if name not in set(mapped.values())]
    head: Any = head_model.model[-1]  # type: ignore[index]
    for attr in ("cv3", "one2one_cv3"):
        for branch in getattr(head, attr, None) or ():
            branch[-1].weight.data[missing] = 0.0
            branch[-1].bias.data[missing] = NEVER_LOGIT
    model.model = head_model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    return out
