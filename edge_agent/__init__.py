"""The camera-host agent: capture, detection (ONNX Runtime), spool, shipping, model updates.

Importing the package sets the offline variables (``edgeloop.offline``) before any of its
modules loads onnxruntime: the agent never reports home.
"""

from edgeloop.offline import set_offline_variables

set_offline_variables()
