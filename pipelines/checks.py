"""Asset checks on ``training_dataset``; all four block training when they fail.

A bad box, an unknown class or a train/val leak would train or score the model on wrong
data, and a dataset below the minimum size gives no meaningful held-out comparison, so
each check is ``blocking=True``: when it fails, the run stops before ``detector_model``.
The logic lives in ``assets/datasets.py`` (pure functions, tested there).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from assets.datasets import (
    check_boxes_inside_images,
    check_known_classes,
    check_minimum_size,
    check_no_train_val_leak,
)
from edgeloop.datasets import DatasetVersion
from pipelines.settings import get_pipeline_settings


def _result(passed: bool, details: Mapping[str, Any]) -> dg.AssetCheckResult:
    metadata: dict[str, Any] = {
        key: dg.MetadataValue.json(value) if isinstance(value, (list, dict)) else value
        for key, value in details.items()
    }
    return dg.AssetCheckResult(
        passed=passed, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata
    )


@dg.asset_check(asset="training_dataset", blocking=True)
def boxes_inside_images(training_dataset: DatasetVersion) -> dg.AssetCheckResult:
    """Every box is a valid YOLO box inside its image, and every image has a label file."""
    return _result(*check_boxes_inside_images(training_dataset))


@dg.asset_check(asset="training_dataset", blocking=True)
def known_classes(training_dataset: DatasetVersion) -> dg.AssetCheckResult:
    """Every label's class is one of the model's classes, as listed in data.yaml."""
    return _result(*check_known_classes(training_dataset))


@dg.asset_check(asset="training_dataset", blocking=True)
def no_train_val_leak(training_dataset: DatasetVersion) -> dg.AssetCheckResult:
    """No frame (by key or by content) is in both the train and the held-out split."""
    return _result(*check_no_train_val_leak(training_dataset))


@dg.asset_check(asset="training_dataset", blocking=True)
def minimum_size(training_dataset: DatasetVersion) -> dg.AssetCheckResult:
    """At least min_train_images train and min_val_images held-out images (training_dataset's config)."""
    config = get_pipeline_settings().training_dataset
    return _result(
        *check_minimum_size(training_dataset, config.min_train_images, config.min_val_images)
    )


training_dataset_checks = [boxes_inside_images, known_classes, no_train_val_leak, minimum_size]
