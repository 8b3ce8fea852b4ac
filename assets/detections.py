"""The ``detections`` asset: what the edge agents stored in DuckDB, summarised per camera."""

import dagster as dg

from assets._markdown import md_table
from assets.resources import StoreResource


@dg.asset(group_name="ingest", kinds={"duckdb"})
def detections(context: dg.AssetExecutionContext, store: StoreResource) -> dg.MaterializeResult:
    """Frames and detections the edge agents stored in DuckDB (frames, prediction_logs)."""
    with store.store().connect() as con:
        per_camera = con.sql(
            """
            WITH f AS (
                SELECT camera_id, count(*) AS frames,
                       count(jpeg_path) AS frames_with_jpeg,
                       min(captured_at) AS first_captured, max(captured_at) AS last_captured,
                       max(received_at) AS last_received
                FROM frames GROUP BY camera_id
            ), d AS (
                SELECT camera_id, count(*) AS detections,
                       count(*) FILTER (WHERE uncertain) AS uncertain,
                       avg(confidence) AS mean_confidence
                FROM prediction_logs GROUP BY camera_id
            )
            SELECT f.camera_id, f.frames, f.frames_with_jpeg,
                   coalesce(d.detections, 0) AS detections, coalesce(d.uncertain, 0) AS uncertain,
                   d.mean_confidence,
                   strftime(f.first_captured AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ') AS first_captured,
                   strftime(f.last_captured AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ') AS last_captured,
                   strftime(f.last_received AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ') AS last_received
            FROM f LEFT JOIN d USING (camera_id)
            ORDER BY f.camera_id
            """
        ).fetchall()
        totals = con.execute(
            "SELECT (SELECT count(*) FROM frames), (SELECT count(*) FROM prediction_logs)"
        ).fetchone()
    if not per_camera or totals is None:
        raise dg.Failure(
            description=(
                f"no frames stored yet in {store.store().path}: start an edge agent pointed at the "
                "API (it ingests frames and detections), then materialize again"
            )
        )
    frames_total, detections_total = int(totals[0]), int(totals[1])
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
    for camera, frames, _, dets, uncertain, *_ in per_camera:
        metadata[f"{camera}/frames"] = int(frames)
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
