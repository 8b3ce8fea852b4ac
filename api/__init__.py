"""The edgeloop API (FastAPI): ingest, labeling queue and page, models, metrics, retraining.

Run it with ``uvicorn api.main:create_app --factory`` (settings: ``api.settings``).
Importing the package sets the offline variables (``edgeloop.offline``) before any of its
modules loads mlflow or onnxruntime.
"""

from edgeloop.offline import set_offline_variables

set_offline_variables()
