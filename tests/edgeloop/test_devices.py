"""edgeloop.devices: one device setting for training, evaluation, the reviewer and the
crop embedder (issue 17), checked against what torch sees on this machine and, for the
GPU paths this machine lacks, against a torch that reports GPUs (a stand-in)."""

from __future__ import annotations

import pytest
import torch

from edgeloop.devices import torch_device
from edgeloop.settings import LoopSettings


def test_auto_takes_what_this_machine_has() -> None:
    expected = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert torch_device("auto") == expected
    assert torch_device("CPU") == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_a_gpu_named_on_a_machine_without_one_says_so() -> None:
    with pytest.raises(ValueError, match="sees 0 CUDA device"):
        torch_device("cuda")
    with pytest.raises(ValueError, match="set EDGELOOP_DEVICE to auto or cpu"):
        torch_device("cuda:1")


def test_with_gpus_auto_takes_the_first_and_an_index_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert torch_device("auto") == "cuda:0"
    assert (torch_device("cuda"), torch_device("cuda:1")) == ("cuda:0", "cuda:1")
    with pytest.raises(ValueError, match="sees 2 CUDA device"):
        torch_device("cuda:2")


@pytest.mark.parametrize("setting", ["gpu", "cuda:x", "tpu:0", ""])
def test_an_unknown_device_is_refused_with_the_choices(setting: str) -> None:
    with pytest.raises(ValueError, match=r"auto, cpu, cuda|cuda or cuda:N"):
        torch_device(setting)


def test_the_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert LoopSettings().device == "auto"
    monkeypatch.setenv("EDGELOOP_DEVICE", "cpu")
    assert LoopSettings().device == "cpu"
