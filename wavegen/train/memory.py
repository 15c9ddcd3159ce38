"""Will a training step fit? Activation memory from the model shape, checked before step one.

A WaveNet's training memory is dominated by what autograd keeps for the backward pass, which
grows with batch × (receptive field + segment) × layers. ``activation_bytes`` counts it from
the shape the way ``WaveNet``'s trimmed forward builds it (a test holds the count to what
autograd really saves); ``check_fits`` compares it with the device's free memory and, when it
will not fit, says so before the first step, with the largest batch that would.
"""

from __future__ import annotations

import torch

from ..errors import OutOfMemory
from ..limits import available_memory
from ..model.network import WaveNet

GIB = 2**30


def activation_bytes(model: WaveNet, window: int, segment: int, recompute: bool = False, value_bytes: int = 4) -> int:
    """Bytes autograd keeps for one window of ``window`` codes predicting its last ``segment``.

    Per residual block: its input (R × positions in), the gate's tanh and sigmoid outputs and
    their product (3G × positions out); with ``recompute`` only the input is kept (the rest is
    rebuilt block by block in the backward pass, so one block's worth comes back transiently).
    The head keeps two (S × segment) activations and the (classes × segment) log-softmax.
    ``value_bytes`` is 2 under bf16 autocast; the log-softmax and the inputs that checkpointing
    keeps stay float32 even then.
    """
    c = model.config
    residual, gate, skip = c.residual_channels, c.gate_channels, c.skip_channels
    if window == segment:  # no context (train.full_context = false): the padded forward
        return _padded_activation_bytes(model, window, recompute, value_bytes)
    length = window - c.input_kernel_size  # positions the first block reads
    kept, largest_block = 0, 0
    for block in model.blocks:
        out = length - block.conv.left_pad
        block_bytes = (residual * length + 3 * gate * out) * value_bytes
        kept += residual * length * 4 if recompute else block_bytes
        largest_block = max(largest_block, block_bytes)
        length = out
    if recompute:
        kept += largest_block
    head = 2 * skip * segment * value_bytes + c.classes * segment * 4  # the loss runs in float32
    lookup = window * c.input_kernel_size * 8  # int64 codes of the table lookups
    return kept + head + lookup


def _padded_activation_bytes(model: WaveNet, window: int, recompute: bool, value_bytes: int) -> int:
    """``activation_bytes`` for a window with no context, every position predicted: the
    padded forward keeps the (padded) int64 codes of its table lookups, and per block its
    padded input and the gate's three (G × window) outputs; the skips, the head and the loss
    cover every position."""
    c = model.config
    residual, gate, skip = c.residual_channels, c.gate_channels, c.skip_channels
    lookup = (window + c.input_kernel_size) * 8
    blocks = [(residual * (window + block.conv.left_pad) + 3 * gate * window) * value_bytes for block in model.blocks]
    kept = len(blocks) * residual * window * 4 + max(blocks) if recompute else sum(blocks)
    head = 2 * skip * window * value_bytes + c.classes * window * 4
    return lookup + kept + head


def saved_weight_bytes(model: WaveNet, value_bytes: int = 4) -> int:
    """Bytes of weights a step's backward pass keeps besides the parameters themselves.

    The blocks' weights (``layer_weights``): with weight normalisation (``model.weight_norm``)
    the stacked float32 directions it normalises, and the weights the convolutions read:
    computed float32 ones, or their bf16 copies under autocast (``value_bytes`` 2). The head's:
    the weights weight normalisation computes, or their bf16 copies. (The input layer's table
    lookups keep only the codes.)"""
    normed = model.config.weight_norm
    blocks = sum(p.numel() for block in model.blocks for p in block.parameters())
    head = sum(p.numel() for p in model.head.parameters())
    computed = value_bytes if value_bytes == 2 or normed else 0
    return blocks * (4 * normed + max(computed, value_bytes)) + head * computed


def fixed_bytes(model: WaveNet, averaged: bool = False, value_bytes: int = 4) -> int:
    """Weights, gradients and Adam's two moments (and a moving average), float32, and the
    weights the backward pass keeps (``saved_weight_bytes``)."""
    return model.parameter_count() * 4 * (4 + int(averaged)) + saved_weight_bytes(model, value_bytes)


def free_bytes(device: torch.device) -> int | None:
    """Memory a step can still take on ``device``: free CUDA memory, or the system's available
    memory on a CPU (None where it cannot be read)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return available_memory()


def largest_batch(
    model: WaveNet,
    window: int,
    segment: int,
    budget: int,
    recompute: bool = False,
    value_bytes: int = 4,
    averaged: bool = False,
) -> int:
    """The largest batch whose activations fit in ``budget`` bytes (0 if not even one)."""
    per_window = activation_bytes(model, window, segment, recompute, value_bytes)
    return max(0, (budget - fixed_bytes(model, averaged, value_bytes)) // per_window)


def check_fits(
    model: WaveNet,
    batch: int,
    segment: int,
    device: torch.device,
    recompute: bool = False,
    averaged: bool = False,
    free: int | None = None,
    value_bytes: int = 4,
    full_context: bool = True,
) -> None:
    """Raise ``OutOfMemory`` if a step of ``batch`` windows (receptive field + ``segment``, or
    ``segment`` alone without ``full_context``) clearly cannot fit in the device's free memory
    (``free`` overrides the reading).

    Activations are counted at ``value_bytes`` a value (2 under bf16 autocast). The count is what autograd keeps, a lower bound of the step's peak, so a batch this lets pass
    can still run out; ``train`` reports that case the same way.
    """
    free = free_bytes(device) if free is None else free
    if free is None:
        return
    window = model.receptive_field + segment if full_context else segment
    need = batch * activation_bytes(model, window, segment, recompute, value_bytes) + fixed_bytes(
        model, averaged, value_bytes
    )
    if need <= free:
        return
    raise OutOfMemory(
        describe_shortfall(model, batch, segment, device, free, recompute, averaged, need, value_bytes, full_context)
    )


def describe_shortfall(
    model: WaveNet,
    batch: int,
    segment: int,
    device: torch.device,
    free: int,
    recompute: bool,
    averaged: bool,
    need: int | None = None,
    value_bytes: int = 4,
    full_context: bool = True,
) -> str:
    """One line: what the step needs, what the device has, and what would fit instead."""
    window = model.receptive_field + segment if full_context else segment
    fits = largest_batch(model, window, segment, free, recompute, value_bytes, averaged)
    what = f" (receptive field {model.receptive_field} + segment {segment})" if full_context else ""
    text = (
        f"train: batch {batch} × {window} samples{what} needs {'about ' + format(need / GIB, '.1f') + ' GiB' if need else 'more memory than'} "
        f"{'but ' if need else ''}{device} has {free / GIB:.1f} GiB free; "
    )
    text += f"the largest batch that fits is {fits}" if fits else "not even batch 1 fits"
    if not recompute:
        saving = largest_batch(model, window, segment, free, True, value_bytes, averaged)
        text += f" ({saving} with train.activation_checkpointing = true)"
    return text + "; lower train.batch_size or train.segment_length"


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


_kept = False


def keep_freed_memory() -> bool:
    """Make glibc keep the memory of freed tensors for the next step instead of returning it.

    By default glibc maps large blocks (a training step's activations are tens of MB each)
    straight from the system and unmaps them on free, so every step faults all its
    activation memory back in, page by page. On the 2-core VM this was measured on, keeping
    the memory made the plain benchmark model's CPU step 1.17–1.25× faster (``bench --train``).
    Process-wide; returns whether it applied (glibc only).
    """
    import ctypes

    global _kept
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    _kept = bool(libc.mallopt(_M_MMAP_THRESHOLD, 2**30)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**30))
    return _kept


def freed_memory_kept() -> bool:
    """Whether ``keep_freed_memory`` has switched this process over."""
    return _kept
