"""Which ONNX Runtime execution providers the agent asks for (``--execution-providers``,
``EDGELOOP_AGENT_EXECUTION_PROVIDERS``): ``auto`` takes every accelerator the installed
onnxruntime build offers, best first, then the CPU; a list names them.

The providers and their order are onnxruntime's (https://onnxruntime.ai/docs/execution-providers/):
a session tries them in the order given and runs each node on the first that supports it,
so the CPU provider always comes last as the fallback. A GPU comes with another build of
the package (``onnxruntime-gpu`` for CUDA and TensorRT, ``onnxruntime-openvino`` for Intel,
the standard macOS wheel for CoreML), installed in place of ``onnxruntime``.
"""

from __future__ import annotations

from collections.abc import Sequence

AUTO = "auto"
CPU = "CPUExecutionProvider"
PREFERENCE = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "OpenVINOExecutionProvider",
    "CoreMLExecutionProvider",
    CPU,
)
"""The order ``auto`` takes them in (those the build offers): TensorRT's fused kernels before
plain CUDA on an NVIDIA GPU (and Jetson), then Intel's OpenVINO, Apple's CoreML, the CPU."""


def choose_providers(setting: str, available: Sequence[str]) -> list[str]:
    """The providers to ask onnxruntime for, best first, ending with the CPU.

    Args:
        setting: ``auto``, or a comma-separated list of provider names
            (``CUDAExecutionProvider,CPUExecutionProvider``).
        available: what the installed build offers (``onnxruntime.get_available_providers()``).

    Raises:
        ValueError: a provider named is not in this build (the message lists those that are).
    """
    if setting.strip().lower() == AUTO:
        chosen = [p for p in PREFERENCE if p in available]
        return chosen if CPU in chosen else [*chosen, CPU]
    named = [p.strip() for p in setting.split(",") if p.strip()]
    missing = [p for p in named if p not in available]
    if missing or not named:
        raise ValueError(
            f"execution providers {', '.join(missing) or repr(setting)} are not in this "
            f"onnxruntime build, which offers {', '.join(available)}; use auto, or install "
            "the build that has them (onnxruntime-gpu, onnxruntime-openvino)"
        )
    return named if CPU in named else [*named, CPU]
