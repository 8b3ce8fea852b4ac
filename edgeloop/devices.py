"""Where torch work runs: fine-tuning, held-out evaluation, the reference reviewer and the
crop embedder, all from one setting (``EDGELOOP_DEVICE``, ``LoopSettings.device``).

``auto`` takes the best device torch sees, CUDA (the first GPU) before the CPU, as
ultralytics itself does when no device is given (``select_device``). Apple's MPS is used
only when named: ultralytics documents its training there as incomplete.
"""

from __future__ import annotations

AUTO = "auto"


def torch_device(setting: str = AUTO) -> str:
    """The torch device for ``setting``: ``auto`` gives ``cuda:0`` when torch sees a CUDA
    device, else ``cpu``; ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` are checked and returned
    (``cuda`` as ``cuda:0``).

    Raises:
        ValueError: the device is unknown or this machine does not have it (a CUDA device
            with a CPU-only torch build, an index past the last GPU, MPS off Apple silicon).
    """
    import torch

    name = setting.strip().lower()
    if name == AUTO:
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        index_text = name.partition(":")[2] or "0"
        if not index_text.isdigit():
            raise ValueError(f"device {setting!r}: a CUDA device is cuda or cuda:N")
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if int(index_text) >= count:
            raise ValueError(
                f"device {setting!r}, but torch {torch.__version__} sees {count} CUDA "
                f"device(s) (built for CUDA {torch.version.cuda or 'none: a CPU-only build'}); "
                "set EDGELOOP_DEVICE to auto or cpu"
            )
        return f"cuda:{int(index_text)}"
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(
                "device 'mps', but torch sees no Apple GPU; set EDGELOOP_DEVICE to auto"
            )
        return "mps"
    raise ValueError(f"unknown device {setting!r}: auto, cpu, cuda, cuda:N or mps")


def executed_on() -> str:
    """Where the calling step runs, for run metadata and MLflow params: ``host (pid N)``,
    and, inside a Celery worker (``edgeloop worker``, dagster-celery), ``via worker NODE,
    queue Q`` with the worker's node name (``name@host``) and the queue the task came from."""
    import os
    import socket

    where = f"{socket.gethostname()} (pid {os.getpid()})"
    try:
        from celery import current_task
    except ImportError:  # celery comes with the networked extra only
        return where
    request = getattr(current_task, "request", None) if current_task else None
    node = getattr(request, "hostname", None) if request is not None else None
    if not node:
        return where
    queue = (getattr(request, "delivery_info", None) or {}).get("routing_key", "")
    return f"{where} via worker {node}, queue {queue.partition('.')[0] or '?'}"
