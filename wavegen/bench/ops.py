"""What a piece of PyTorch work asks of the device, counted on any machine (a CPU will do).

On a GPU, eager PyTorch costs host time for every operator call (a few microseconds each,
whatever the tensor sizes), and every read of a device value (``.item()``, ``bool(t)``,
``if t:``) waits for all the work queued before it. Both are properties of the code, not of
the device, so they can be counted on a CPU: ``count_ops`` records every ATen operator the
dispatcher runs, forward and backward, and the calls that read a device value back to the
host. (Copies to the host with ``.tolist()`` or ``.cpu()`` are no operator on a CPU tensor:
those are not seen here.)

``OpTrace`` keeps the sequence of calls with their non-tensor arguments, to check that two
steps ask for the same work (what a CUDA graph captured once can replay for every step).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

# Operators whose result the host needs: each is a device synchronisation on a GPU.
HOST_READS = frozenset(
    {"aten._local_scalar_dense", "aten.is_nonzero", "aten.equal", "aten.nonzero", "aten.masked_select", "aten.unique"}
)


@dataclass
class OpCount:
    """Operator calls (``calls``) and host reads among them (``host_reads``), with the count of
    each operator (``by_op``, e.g. ``"aten.convolution"``)."""

    calls: int = 0
    host_reads: int = 0
    by_op: Counter = field(default_factory=Counter)


class OpTrace(TorchDispatchMode):
    """A dispatch mode that counts every operator call; with ``keep_args``, it also keeps each
    call's name and its arguments with tensors replaced by their dtype (``calls``)."""

    def __init__(self, keep_args: bool = False) -> None:
        super().__init__()
        self.count = OpCount()
        self.keep_args = keep_args
        self.calls: list[tuple[str, Any]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func.overloadpacket)
        self.count.calls += 1
        self.count.by_op[name] += 1
        if name in HOST_READS:
            self.count.host_reads += 1
        if self.keep_args:
            self.calls.append((str(func), tree_map(_plain, (args, kwargs))))
        return func(*args, **kwargs)


def _plain(value: Any) -> Any:
    """An argument as a trace keeps it: a tensor by its dtype, a number or name as it is, any
    other object by its type (a profiler's record, say)."""
    if isinstance(value, torch.Tensor):
        return f"<{value.dtype}>"
    if value is None or isinstance(value, (bool, int, float, str, torch.dtype, torch.device, torch.memory_format)):
        return value
    return f"<{type(value).__name__}>"


def count_ops(work: Callable[[], Any]) -> OpCount:
    """Run ``work()`` and count the operators it calls (forward and backward alike)."""
    with OpTrace() as trace:
        work()
    return trace.count
