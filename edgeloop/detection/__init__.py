"""Object detection with a YOLO ONNX export, shared by the camera agent and the loop host.

| module | what |
|---|---|
| ``edgeloop.detection.preprocess`` | letterbox to the model's square input, and the way back |
| ``edgeloop.detection.providers`` | which ONNX Runtime execution providers to ask for |
| ``edgeloop.detection.quality`` | per-frame image statistics (brightness, contrast, sharpness, saturation) |
| ``edgeloop.detection.onnx`` | the ``Detector`` ABC and ``OnnxDetector`` (preprocess → inference → postprocess) |

Light imports only (numpy, OpenCV; onnxruntime when a model is loaded): the agent installs
with ``edgeloop[edge]`` and imports these modules.
"""
