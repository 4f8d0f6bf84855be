"""Several processes, one store: deterministic shares of an extraction under ``accelerate``.

Under ``accelerate launch`` (one process per GPU, or several CPU processes with the gloo
backend) each process computes a deterministic share of the images, writes its entries into
the ONE content-addressed :class:`~difflens.features.store.FeatureStore` they all share, and
waits for the others; the finished tables are then read back from the store. Without a
launcher nothing changes: one process, the whole list.

**Shares.** The images are cut into the batches of ``batch_size`` that one process would
run, in order, and batch ``b`` goes to process ``b mod N`` (:class:`Shard`). Every image is
computed by exactly one process, in exactly the batch it would have been computed in by a
single process, so the entries -- their names and their values -- are those a single
process writes.

**Concurrent writers.** Entries are written atomically (a temporary file in the entry's
folder, then ``os.replace``), so readers see an entry complete or not at all, and two
processes that happen to write the same entry write the same bytes; no lock is needed.

**The process group.** :func:`process_state` is accelerate's ``PartialState``, created on
first use when a launcher's environment says there are several processes (``WORLD_SIZE``,
or MPI's ``PMI_SIZE`` / ``OMPI_COMM_WORLD_SIZE``) or a process group already exists. It runs
on the CPU with gloo when ``ACCELERATE_USE_CPU`` is set or no CUDA device is present, on
``cuda:<local rank>`` with NCCL otherwise. A script that ends a launched run calls
:func:`finish` so the group is taken down before the processes exit.

Two processes on one CPU machine (``accelerate launch --cpu`` starts one process unless MPI
is configured, so the multi-process launcher is used and the CPU chosen because there is no
CUDA)::

    accelerate launch --multi_gpu --num_processes 2 -m difflens.runner --config demo
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "WORLD_SIZE_VARIABLES",
    "launched",
    "process_state",
    "Shard",
    "current_shard",
    "process_device",
    "wait_for_everyone",
    "gather",
    "sum_counts",
    "average_gradients",
    "finish",
]

WORLD_SIZE_VARIABLES: tuple[str, ...] = (
    "WORLD_SIZE",
    "PMI_SIZE",
    "OMPI_COMM_WORLD_SIZE",
    "MV2_COMM_WORLD_SIZE",
)
"""Environment variables in which launchers (torchrun / accelerate, MPI) give the process count."""


def _world_size_from_env() -> int:
    """The process count a launcher put in the environment (1 without a launcher)."""
    for name in WORLD_SIZE_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            try:
                return max(1, int(value))
            except ValueError:
                continue
    return 1


def launched() -> bool:
    """Whether this process is one of several started by a launcher.

    Returns:
        True when the environment names more than one process or a ``torch.distributed``
        process group is already initialised.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return True
    return _world_size_from_env() > 1


def _use_cpu() -> bool:
    """Whether the process group runs on the CPU (gloo): asked for, or no CUDA device."""
    flag = os.environ.get("ACCELERATE_USE_CPU", "").strip().lower()
    return flag in {"1", "true", "yes", "on"} or not torch.cuda.is_available()


def process_state() -> object | None:
    """Accelerate's ``PartialState`` of a launched run, ``None`` for a single process.

    Returns:
        The ``accelerate.PartialState`` (created, and the process group with it, on the
        first call of a launched process), or ``None`` when :func:`launched` is False.
    """
    if not launched():
        return None
    from accelerate import PartialState

    return PartialState(cpu=_use_cpu())


@dataclass(frozen=True)
class Shard:
    """One process's share of a list cut into batches: batch ``b`` goes to process ``b mod count``.

    Attributes:
        index: this process (0 is the main process).
        count: how many processes share the list.

    Raises:
        ValueError: ``count < 1`` or ``index`` outside ``0 .. count - 1``.
    """

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} of {self.count} does not exist")

    @property
    def is_main(self) -> bool:
        """Whether this is the main process (index 0)."""
        return self.index == 0

    def owns(self, position: int, batch_size: int) -> bool:
        """Whether the item at ``position`` of the list is in this share.

        Args:
            position: the item's position in the whole list.
            batch_size: items per batch (the batches of a single-process run).

        Returns:
            True when its batch ``position // batch_size`` belongs to this process.

        Raises:
            ValueError: ``batch_size < 1``.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return (position // batch_size) % self.count == self.index

    def positions(self, n: int, batch_size: int) -> list[int]:
        """Positions of this share's items in a list of ``n``.

        Args:
            n: the list's length.
            batch_size: items per batch.

        Returns:
            Ascending positions; the shares of all processes partition ``range(n)``.
        """
        return [i for i in range(n) if self.owns(i, batch_size)]

    def take(self, items: Iterable, batch_size: int) -> list:
        """This share's items, in list order (whole batches, so batches stay as they were).

        Args:
            items: a sequence (read by index, so items of other shares are not touched)
                or any iterable (read through, keeping this share's items).
            batch_size: items per batch.

        Returns:
            The items of this share.
        """
        if isinstance(items, Sequence) or (
            hasattr(items, "__getitem__") and hasattr(items, "__len__")
        ):
            return [items[i] for i in self.positions(len(items), batch_size)]
        return [item for i, item in enumerate(items) if self.owns(i, batch_size)]


def current_shard() -> Shard:
    """This process's shard: ``Shard(process_index, num_processes)`` under a launcher.

    Returns:
        ``Shard(0, 1)`` for a single process.
    """
    state = process_state()
    if state is None:
        return Shard()
    return Shard(int(state.process_index), int(state.num_processes))


def process_device(device: str | torch.device) -> str | torch.device:
    """The device this process should use when ``device`` was asked for the whole run.

    Args:
        device: the run's device (``"cuda"``, ``"cpu"``, ``"cuda:1"``).

    Returns:
        Under a multi-GPU launch, this process's own GPU (``cuda:<local rank>``) for a
        device of type ``cuda``; otherwise ``device`` unchanged.
    """
    state = process_state()
    if state is None or torch.device(device).type != "cuda" or _use_cpu():
        return device
    return state.device


def wait_for_everyone() -> None:
    """Block until every process of a launched run gets here (nothing for one process)."""
    state = process_state()
    if state is not None:
        state.wait_for_everyone()


def gather(obj: object) -> list:
    """Every process's ``obj``, in process order (a picklable object).

    Args:
        obj: this process's value.

    Returns:
        ``[obj of process 0, obj of process 1, ...]``; ``[obj]`` for one process.
    """
    if process_state() is None:
        return [obj]
    from accelerate.utils import gather_object

    return list(gather_object([obj]))


def sum_counts(counts: Mapping[str, int]) -> Counter:
    """Counts summed over every process (each process counted its own share).

    Args:
        counts: this process's counts (``done``, ``cached``, ...).

    Returns:
        The sum over processes, with every key any process had.
    """
    total: Counter = Counter()
    for part in gather(dict(counts)):
        for key, value in part.items():
            total[key] += int(value)
    return total


def average_gradients(
    parameters: Iterable[torch.nn.Parameter], loss: float | None
) -> tuple[int, float]:
    """Gradient sync of a data-parallel step: the mean over every process's usable example.

    Each process has back-propagated its own example (or has none: ``loss`` is ``None`` or
    NaN, and its gradients are left out). One all-reduce sums the gradients, the number of
    usable examples and their losses; every process then holds the same mean gradient, so
    the optimisers, stepped alike, keep the models equal. One process: nothing is changed.

    Args:
        parameters: the model's parameters (their ``.grad`` after ``backward``).
        loss: this process's loss, ``None`` or NaN when it had no usable example.

    Returns:
        ``(usable examples over all processes, their mean loss)``; ``(0, nan)`` when no
        process had one (then no optimiser should step).
    """
    usable = loss is not None and math.isfinite(loss)
    if process_state() is None:
        return (1, float(loss)) if usable else (0, float("nan"))
    from accelerate.utils import reduce

    params = [p for p in parameters if p.requires_grad]
    grads = [
        p.grad.detach().reshape(-1) if usable and p.grad is not None else p.new_zeros(p.numel())
        for p in params
    ]
    tail = torch.tensor([float(usable), float(loss) if usable else 0.0])
    total = reduce(torch.cat([*[g.float() for g in grads], tail.to(grads[0].device)]), "sum")
    count = int(round(float(total[-2])))
    offset = 0
    for p in params:
        if count:
            mean = total[offset : offset + p.numel()].view_as(p) / count
            p.grad = mean.to(p.dtype)
        offset += p.numel()
    return count, float(total[-1]) / count if count else float("nan")


def finish() -> None:
    """End a launched run: wait for every process, then take the process group down.

    Without it, gloo can abort a process that exits while another still holds the group.
    Nothing happens for one process.
    """
    state = process_state()
    if state is None:
        return
    state.wait_for_everyone()
    state.destroy_process_group()
