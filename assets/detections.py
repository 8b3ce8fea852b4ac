"""The ``detections`` asset: what the edge agents stored in DuckDB, summarised per camera."""

import dagster as dg

from assets._markdown import md_table
from assets.resources import StoreResource
from edgeloop.store import frames


@dg.asset(group_name="ingest", kinds={"duckdb"})
def detections(context: dg.AssetExecutionContext, store: StoreResource) -> dg.MaterializeResult:
    """Frames and detections the edge agents stored in DuckDB (frames, prediction_logs)."""
    with store.store().connect() as con:
        summary = frames.detection_summary(con=con)
        frames_total, detections_total = frames.counts(con=con)
    per_camera = [tuple(row.values()) for row in summary]
    if not per_camera:
        raise dg.Failure(
            description=(
                f"no frames stored yet in {store.store().location}: start an edge agent pointed at the "
                "API (it ingests frames and detections), then materialize again"
            )
        )
    uncertain_total = sum(int(row[4]) for row in per_camera)
    first = min(row[6] for row in per_camera)
    last = max(row[7] for row in per_camera)
    last_received = max(row[8] for row in per_camera)
    metadata: dict[str, dg.RawMetadataValue] = {
        "frames": frames_total,
        "detections": detections_total,
        "uncertain_detections": uncertain_total,
        "cameras": len(per_camera),
        "first_captured": first,
        "last_captured": last,
        "dagster/row_count": detections_total,
        "per_camera": dg.MetadataValue.md(
            md_table(
                [
                    "camera",
                    "frames",
                    "frames with JPEG",
                    "detections",
                    "uncertain",
                    "mean confidence",
                    "first captured",
                    "last captured",
                ],
                [row[:8] for row in per_camera],
            )
        ),
    }
    for camera, n_frames, _, dets, uncertain, *_ in per_camera:
        metadata[f"{camera}/frames"] = int(n_frames)
        metadata[f"{camera}/detections"] = int(dets)
        metadata[f"{camera}/uncertain_detections"] = int(uncertain)
    context.log.info(
        "%s frames, %s detections (%s uncertain) from %s cameras",
        frames_total,
        detections_total,
        uncertain_total,
        len(per_camera),
    )
    return dg.MaterializeResult(
        metadata=metadata,
        data_version=dg.DataVersion(f"{frames_total}-{detections_total}-{last_received}"),
    )
