"""The Dagster assets of the loop, one module per domain.

Importing the package sets the offline variables (``edgeloop.offline``) before any of its
modules loads ultralytics, mlflow, dvc or onnxruntime.
"""

from edgeloop.offline import set_offline_variables

set_offline_variables()
