"""The arithmetic a training step runs in: float32, or bf16 autocast where it is native.

Under bf16 autocast the weights, the gradients, the optimizer and the loss stay float32; the
convolutions multiply bfloat16 values and accumulate in float32, and the activations they keep
for the backward pass take half the memory. Where the hardware has bf16 dot products (CUDA
GPUs from Ampere on; CPUs with AVX512-BF16 or AMX, such as AMD Zen 4 and Intel Sapphire
Rapids) that is several times faster: on the 2-core Zen 4 VM this was measured on, a
64→128 dilated convolution ran 5× faster and a whole training step 1.7–1.9× faster. Elsewhere
bf16 is emulated and slower, so ``auto`` only picks it where it is native.
"""

from __future__ import annotations

import torch

from ..config import PRECISIONS
from ..errors import ConfigError


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 in hardware."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    try:  # the CPU checks are not public API: a torch without them gets float32
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


def resolve(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16``: what ``precision`` (a ``train.precision`` value) means on ``device``."""
    if precision not in PRECISIONS:
        raise ConfigError(f"'train.precision' must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """The autocast context for a resolved ``precision`` (disabled for fp32). Its cache of cast
    weights is off: a CUDA graph's capture cannot keep it, and ``layer_weights`` casts the
    blocks' weights once a step anyway."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16", cache_enabled=False)


def value_bytes(precision: str) -> int:
    """Bytes per activation value autograd keeps at a resolved ``precision``."""
    return 2 if precision == "bf16" else 4
