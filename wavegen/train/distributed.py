"""Data-parallel training in several processes: which process this is, its process group, and
the few collectives the training loop needs.

torchrun starts the processes (one per GPU, on one machine or on several that meet through its
rendezvous) and tells each its place in environment variables: ``WORLD_SIZE`` (processes in
all), ``RANK`` (this one, 0 .. WORLD_SIZE - 1) and ``LOCAL_RANK`` (this one on its machine,
which picks its GPU). A process started without them trains alone: no process group, and every
collective below returns its own value untouched, so a single-process run computes exactly what
it did before there were several.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, TypeVar

import torch
import torch.distributed as dist

from ..errors import ConfigError, DistributedError
from ..messages import silenced

ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
T = TypeVar("T")


@dataclass
class World:
    """This process's place among the training processes, and the device it trains on.

    Rank 0 is the main process: the only one that logs, validates and writes files.
    """

    size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    joined: bool = False  # whether ``start`` created the process group (and ``close`` ends it)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true in any process. Every process must call it at the same point."""
        if not self.distributed:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        with self._talking():
            dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a scalar tensor over the processes (alone: ``value`` itself). It is
        finite only where every process's value is, so it doubles as an all-finite flag."""
        if not self.distributed:
            return value
        total = value.detach().float().clone()
        with self._talking():
            dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total / self.size

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj`` (picklable), in rank order, on every process."""
        if not self.distributed:
            return [obj]
        objects: list[Any] = [None] * self.size
        with self._talking():
            dist.all_gather_object(objects, obj)
        return objects

    def barrier(self) -> None:
        """Wait until every process gets here (for instance, until rank 0 has written a file)."""
        if not self.distributed:
            return
        with self._talking():
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    @contextlib.contextmanager
    def _talking(self) -> Iterator[None]:
        """A collective that fails has lost another process (it failed or was stopped, and
        says so itself): one line here, not a traceback from every survivor."""
        try:
            yield
        except RuntimeError as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DistributedError(
                f"rank {self.rank}: lost contact with the other training processes ({reason})"
            ) from None

    def close(self) -> None:
        """Leave the process group that ``start`` created (nothing for a lone process).

        With gloo this must free the group itself, not just unregister it: its destructor
        releases the GIL and joins the worker threads, which may still be freeing the last
        collective's tensors. A group that outlives it (held by a DDP wrapper, or by module
        defaults: see ``start``) keeps those threads running into interpreter shutdown, where
        one that needs the GIL aborts the process after a run that completed."""
        if self.joined and dist.is_initialized():
            dist.destroy_process_group()
        self.joined = False


def rank_zero_speaks(train: Callable[..., T]) -> Callable[..., T]:
    """``train`` (called with ``world=``) says nothing in the processes of a distributed run
    but rank 0, which says it once for all: the other ranks' loggers are silenced while it runs."""

    @functools.wraps(train)
    def silent_unless_main(*args, world: World | None = None, **kwargs) -> T:
        with silenced(world is not None and not world.is_main):
            return train(*args, world=world, **kwargs)

    return silent_unless_main


def from_env(environ: Mapping[str, str] = os.environ) -> tuple[int, int, int]:
    """(world size, rank, local rank) as torchrun set them; (1, 0, 0) for a lone process."""
    if "WORLD_SIZE" not in environ:
        return 1, 0, 0
    try:
        size, rank, local = (int(environ.get(name, "0")) for name in ENV)
    except ValueError:
        said = ", ".join(f"{name}={environ.get(name)!r}" for name in ENV)
        raise ConfigError(
            f"WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers (torchrun sets them), got {said}"
        ) from None
    if size < 1 or not 0 <= rank < size or local < 0:
        raise ConfigError(
            f"WORLD_SIZE={size}, RANK={rank}, LOCAL_RANK={local}: need 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0"
        )
    return size, rank, local


def start(device: torch.device, environ: Mapping[str, str] = os.environ) -> World:
    """This process's ``World``. Under torchrun (WORLD_SIZE > 1) it joins the process group:
    NCCL on GPUs, where it trains on ``cuda:LOCAL_RANK``, and gloo on CPUs. A process group that
    already exists (set up by the caller) is used as it is and left open."""
    size, rank, local = from_env(environ)
    if size == 1:
        return World(device=device)
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; train in one process")
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if local >= count:
            raise ConfigError(
                f"LOCAL_RANK {local}: this machine has {count} GPU{'s' if count != 1 else ''}; "
                f"start at most {count} processes on it (torchrun --nproc-per-node {count})"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)  # NCCL and all_gather_object use the current device
    world = World(size, rank, local, device)
    if not dist.is_initialized():
        # Before the group exists: torch.distributed.nn.functional binds ``group.WORLD`` as a
        # default argument when first imported, and DDP imports it (through torch._dynamo). Done
        # later, those defaults would keep the group, and gloo's worker threads, alive past
        # destroy_process_group into interpreter shutdown, where a worker that frees the last
        # collective's tensors (Python objects: it needs the GIL) aborts the process ("terminate
        # called without an active exception"). See ``World.close``.
        importlib.import_module("torch.distributed.nn")

        # MASTER_ADDR/MASTER_PORT (env://) come from torchrun, which also ran the rendezvous.
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=size)
        world.joined = True
    elif (dist.get_world_size(), dist.get_rank()) != (size, rank):
        raise ConfigError(
            f"the existing process group (rank {dist.get_rank()} of {dist.get_world_size()}) "
            f"disagrees with RANK={rank}, WORLD_SIZE={size}"
        )
    return world


def launch(nproc: int, device: torch.device, args: list[str]) -> int:
    """Run ``torchrun --standalone --nproc-per-node NPROC ARGS`` (one machine, a free port) and
    return the exit status for this command: 0, 128 + the signal's number when stopped by one
    (130, 143), or a failed process's own status (it has printed why).

    torchrun runs here, in this process, as ``python -m torch.distributed.run`` would: it
    starts the processes in sessions of their own and passes Ctrl-C or SIGTERM on to them once;
    they stop together and save. Running it here turns its ways of ending into the one-line
    messages of the rest of wavegen instead of its tracebacks.
    """
    if "WORLD_SIZE" in os.environ:
        raise ConfigError(
            "--nproc: this is already one of torchrun's processes (torchrun's --nproc-per-node says how many)"
        )
    if device.type == "cuda" and nproc > torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ConfigError(
            f"--nproc {nproc}: this machine has {count} GPU{'s' if count != 1 else ''} (one process per GPU)"
        )
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # torchrun sets 1 thread per process where OMP_NUM_THREADS is unset, with a banner on stderr
    # saying so; the same setting made here leaves it nothing to announce (and train.threads, or
    # the user's own OMP_NUM_THREADS, still decide)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        run(parse_args(["--standalone", "--nproc-per-node", str(nproc), *args]))
    except SignalException as exc:
        return 128 + int(exc.sigval)  # 130 for Ctrl-C, 143 for SIGTERM, as every command
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        if failure.exitcode > 0:
            return failure.exitcode
        raise DistributedError(f"training process {rank} was killed by {failure.signal_name()}") from None
    return 0
