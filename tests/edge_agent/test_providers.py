"""The agent's ONNX Runtime execution providers (``edgeloop.detection.providers``): ``auto`` takes
the accelerators the installed build offers, best first, then the CPU; a provider the build
lacks is a clear error, not a crashed agent. The choice is checked on the lists the builds
report; the session itself on this machine's real onnxruntime and the seed detector."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from edge_agent.detectors import ModelError, OnnxDetector, load_detector
from edge_agent.model_sync import ModelFile
from edge_agent.settings import AgentSettings
from edge_agent.uncertainty import uncertainty_band
from edgeloop.detection.providers import CPU, choose_providers

GPU_BUILD = ["TensorrtExecutionProvider", "CUDAExecutionProvider", CPU]
ACCELERATORS = {"TensorrtExecutionProvider", "CUDAExecutionProvider", "OpenVINOExecutionProvider"}


@pytest.mark.parametrize(
    ("available", "chosen"),
    [
        (["AzureExecutionProvider", CPU], [CPU]),  # the standard wheel: the CPU only
        (["CUDAExecutionProvider", "TensorrtExecutionProvider", CPU], GPU_BUILD),
        (["OpenVINOExecutionProvider", CPU], ["OpenVINOExecutionProvider", CPU]),
        (["CoreMLExecutionProvider"], ["CoreMLExecutionProvider", CPU]),
    ],
)
def test_auto_takes_what_the_build_offers_best_first(
    available: list[str], chosen: list[str]
) -> None:
    assert choose_providers("auto", available) == chosen
    assert choose_providers("AUTO", available) == chosen


def test_a_named_list_keeps_its_order_and_ends_with_the_cpu() -> None:
    assert choose_providers("CUDAExecutionProvider", GPU_BUILD) == ["CUDAExecutionProvider", CPU]
    assert choose_providers(f" {CPU} ", GPU_BUILD) == [CPU]


@pytest.mark.parametrize("setting", ["CUDAExecutionProvider", "cuda", ","])
def test_a_provider_the_build_lacks_says_which_it_has(setting: str) -> None:
    with pytest.raises(ValueError, match="AzureExecutionProvider, CPUExecutionProvider"):
        choose_providers(setting, ["AzureExecutionProvider", CPU])


def _settings(tmp_path: Path, providers: str) -> AgentSettings:
    return AgentSettings(
        source="unused.avi",
        camera_id="cam-1",
        state_dir=tmp_path,
        execution_providers=providers,
    )  # type: ignore[call-arg]


def test_the_seed_detector_runs_on_what_auto_chose_here(seed_onnx: Path, tmp_path: Path) -> None:
    settings = _settings(tmp_path, "auto")
    model = ModelFile(path=seed_onnx, version="7", sha256="", origin="local")
    detector = load_detector(model, settings, uncertainty_band(model, settings))
    wanted = choose_providers("auto", ort.get_available_providers())
    assert detector.execution_provider == wanted[0]
    if not ACCELERATORS & set(ort.get_available_providers()):
        assert detector.execution_provider == CPU  # this machine's build: no accelerator
    assert OnnxDetector(seed_onnx).execution_provider == CPU  # the default: the CPU alone


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="a CUDA build is installed"
)
def test_a_gpu_asked_of_a_cpu_build_is_a_model_error_not_a_crash(
    seed_onnx: Path, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, "CUDAExecutionProvider")
    model = ModelFile(path=seed_onnx, version="7", sha256="", origin="local")
    with pytest.raises(ModelError, match="not in this onnxruntime build"):
        load_detector(model, settings, uncertainty_band(model, settings))
