"""The edgeloop API (FastAPI): ingest, labeling queue and page, models, metrics, retraining.

Run it with ``uvicorn api.main:create_app --factory`` (settings: ``api.settings``).
"""
