"""Which device and precision torch work uses: the CPU default that every other test runs on,
``RLAIF_DEVICE``, and what the training configs ask for on a GPU. No GPU is used here: the GPU
cases fake what torch reports, so they check the choices, not that a GPU run works."""

from __future__ import annotations

import contextlib

import pytest
import torch

from rlaif.backends import accelerator
from rlaif.errors import RlaifError
from rlaif.train.dpo import DPOSettings, _config


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("RLAIF_DEVICE", raising=False)


@pytest.fixture(autouse=True)
def no_launcher(monkeypatch):
    """Not under ``accelerate launch``, whatever started the tests."""
    monkeypatch.delenv(accelerator.LAUNCHER_CPU, raising=False)
    monkeypatch.delenv(accelerator.LAUNCHER_PRECISION, raising=False)


def fake_gpu(monkeypatch, *, bf16: bool = True) -> None:
    """Make torch report a CUDA GPU (with or without bf16) without touching one."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)


def test_cpu_is_the_default_without_a_gpu(no_env, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert accelerator.device() == "cpu"
    assert accelerator.use_bf16() is False
    assert accelerator.inference_dtype() is torch.float32
    assert isinstance(accelerator.autocast(), contextlib.nullcontext)


def test_a_visible_gpu_is_used_in_bf16(no_env, monkeypatch):
    fake_gpu(monkeypatch)
    assert accelerator.device() == "cuda"
    assert accelerator.use_bf16() is True
    assert accelerator.inference_dtype() is torch.bfloat16


def test_a_gpu_without_bf16_stays_float32(no_env, monkeypatch):
    fake_gpu(monkeypatch, bf16=False)
    assert accelerator.device() == "cuda"
    assert accelerator.use_bf16() is False
    assert accelerator.inference_dtype() is torch.float32


@pytest.mark.parametrize("value", ["cpu", "CPU", " cpu "])
def test_rlaif_device_cpu_keeps_a_visible_gpu_out(monkeypatch, value):
    fake_gpu(monkeypatch)
    monkeypatch.setenv("RLAIF_DEVICE", value)
    assert accelerator.device() == "cpu"
    assert accelerator.use_bf16() is False
    assert accelerator.inference_dtype() is torch.float32


@pytest.mark.parametrize("value", ["True", "true", "1"])
def test_accelerate_launch_cpu_keeps_a_visible_gpu_out(no_env, monkeypatch, value):
    """``accelerate launch --cpu`` sets ACCELERATE_USE_CPU=True in every process it starts."""
    fake_gpu(monkeypatch)
    monkeypatch.setenv(accelerator.LAUNCHER_CPU, value)
    assert accelerator.device() == "cpu"
    assert accelerator.use_bf16() is False
    monkeypatch.setenv(accelerator.LAUNCHER_CPU, "False")  # what it sets without --cpu
    assert accelerator.device() == "cuda"


def test_rlaif_device_cuda_against_accelerate_launch_cpu_is_an_error(monkeypatch):
    fake_gpu(monkeypatch)
    monkeypatch.setenv("RLAIF_DEVICE", "cuda")
    monkeypatch.setenv(accelerator.LAUNCHER_CPU, "True")
    with pytest.raises(RlaifError, match="RLAIF_DEVICE=cuda but the launcher asked for the CPU"):
        accelerator.device()


def test_the_launchers_mixed_precision_decides_bf16(no_env, monkeypatch):
    fake_gpu(monkeypatch)
    monkeypatch.setenv(accelerator.LAUNCHER_PRECISION, "no")
    assert accelerator.use_bf16() is False  # though the GPU has bf16
    assert accelerator.inference_dtype() is torch.float32
    monkeypatch.setenv(accelerator.LAUNCHER_PRECISION, "bf16")
    assert accelerator.use_bf16() is True
    assert _config(DPOSettings(data="x", out="o"), steps=1, work_dir="w")["bf16"] is True


def test_bad_rlaif_device_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("RLAIF_DEVICE", "gpu")
    with pytest.raises(RlaifError, match=r"RLAIF_DEVICE must be 'cpu' or 'cuda'.*'gpu'"):
        accelerator.device()


def test_rlaif_device_cuda_without_a_gpu_says_so(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("RLAIF_DEVICE", "cuda")
    with pytest.raises(RlaifError, match="RLAIF_DEVICE=cuda but torch sees no CUDA GPU"):
        accelerator.device()


def _settings(tmp_path) -> DPOSettings:
    return DPOSettings(data=str(tmp_path / "pairs.jsonl"), out=tmp_path / "out")


# transformers 5 renames gradient_checkpointing; TRL still uses the old name
@pytest.mark.filterwarnings("ignore:.*checkpointing:FutureWarning")
def test_dpo_config_on_a_cpu(no_env, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = _config(_settings(tmp_path), steps=3, work_dir=str(tmp_path))
    assert config["bf16"] is False
    assert config["use_cpu"] is True
    from trl import DPOConfig

    args = DPOConfig(**config)  # every key is one DPOConfig takes
    assert args.bf16 is False and args.use_cpu is True


def test_dpo_config_on_a_bf16_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(accelerator, "device", lambda: "cuda")
    monkeypatch.setattr(accelerator, "use_bf16", lambda: True)
    config = _config(_settings(tmp_path), steps=3, work_dir=str(tmp_path))
    assert config["bf16"] is True
    assert config["use_cpu"] is False
