"""Where and how the numbers are computed: device, mixed precision, memory format."""

from __future__ import annotations

import contextlib
import random

from petseg.errors import PetsegError


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str, local_rank: int = 0):
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise PetsegError("cuda: no CUDA device is available", option="device", advice="use {device} cpu")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def resolve_amp_dtype(amp: str, device):
    """The autocast dtype, or None for full float32.

    auto: bf16 where the GPU supports it (no loss scaling needed), fp16 on older GPUs,
    off on CPU, where autocast is rarely faster for convolutions.
    """
    import torch

    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "fp16" and device.type != "cuda":
        raise PetsegError("fp16 needs a CUDA device", option="amp", advice="use {amp} bf16 or off on CPU")
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def autocast(device, dtype):
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_grad_scaler(device, dtype):
    """fp16 gradients underflow without loss scaling; bf16 and float32 need none."""
    import torch

    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def memory_format(device):
    """channels_last (NHWC) on every device.

    On CUDA it lets cuDNN pick its tensor-core kernels; on CPU oneDNN's NHWC depthwise
    convolutions and BatchNorm are far faster than NCHW: 2.4x more images per CPU-second
    for unet_mobilenetv2 training here (benchmarks/train_throughput.py).
    """
    import torch

    return torch.channels_last
