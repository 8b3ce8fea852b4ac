"""The edgeloop Dagster code location (``pipelines.definitions.defs``).

Importing the package sets the offline variables (``edgeloop.offline``) first, in the code
server and in every run worker, before the assets load ultralytics, mlflow, dvc or
onnxruntime.
"""

from edgeloop.offline import set_offline_variables

set_offline_variables()
