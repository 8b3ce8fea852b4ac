"""The store: one module owns each table's SQL (schema, writes and shared reads).

Two backends behind one interface, chosen from settings (``LoopSettings.store()``): the
embedded DuckDB file (``Store``, the default) and PostgreSQL (``EDGELOOP_DATABASE_URL``,
``edgeloop.store.postgres.PostgresStore``). The modules write their SQL once, in DuckDB's
dialect; the PostgreSQL connection translates it (see ``edgeloop.store.postgres``).

| table | owner |
|---|---|
| ``frames``, ``prediction_logs`` (detections) | ``edgeloop.store.frames`` (reads), ``edgeloop.store.ingest`` (the one writer) |
| ``labeling_queue`` | ``edgeloop.store.queue``; its near-duplicate marks ``edgeloop.store.diversity`` |
| ``reviewed_labels`` | ``edgeloop.store.labels`` |
| ``retraining_events`` | ``edgeloop.store.retraining`` |
| ``model_deployments`` | ``edgeloop.store.deployments`` |
| ``training_runs`` | ``edgeloop.store.training_runs`` |
| ``drift_reports`` | ``edgeloop.store.drift`` |
| ``agent_heartbeats`` | ``edgeloop.store.agents`` |
| ``frame_minutes``, ``detection_minutes`` (rollups) | ``edgeloop.store.rollups`` |
| ``site_classes``, ``class_aliases``, ``class_changes`` | ``edgeloop.store.classes`` |
| ``drift_alerts`` | ``edgeloop.store.alerts`` |
| ``tags`` | ``edgeloop.store.tags`` |
| ``thumbnails`` | ``edgeloop.store.thumbnails`` |
| ``prediction_batches``, ``prediction_batch_images``, ``prediction_batch_runs``, ``prediction_batch_detections`` | ``edgeloop.store.prediction_batches`` |
| ``review_verdicts`` | ``edgeloop.store.verdicts`` |
| ``dataset_versions``, ``dataset_frames`` | ``edgeloop.store.dataset_frames`` |
| ``schema_version`` and every ``CREATE`` | ``edgeloop.store.migrations`` |

The API, the sensors, the assets and ``edgeloop status`` call these functions; none
writes SQL of its own against these tables. Every function takes an open connection
(``Store.connect()``) as the keyword ``con`` and leaves transactions to the caller
unless its docstring says it runs one.
"""

from typing import TYPE_CHECKING, TypeAlias

from edgeloop.store.connection import Connection, Store
from edgeloop.store.errors import StoreLockedError, StoreUnavailableError
from edgeloop.store.migrations import SCHEMA_VERSION, migrate

if TYPE_CHECKING:
    from edgeloop.store.postgres import PostgresStore

AnyStore: TypeAlias = "Store | PostgresStore"
"""Either backend's store: ``connect()`` yields a ``Connection``; ``close()``."""

__all__ = [
    "SCHEMA_VERSION",
    "AnyStore",
    "Connection",
    "Store",
    "StoreLockedError",
    "StoreUnavailableError",
    "migrate",
]
