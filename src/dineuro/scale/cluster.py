"""The dask.distributed client a volume run works through: a local cluster of worker
processes, or any running scheduler (dask-jobqueue on SLURM or LSF, a cloud cluster).

Each worker runs one block at a time (one dask thread): the network and its scratch memory
then fit the worker's memory limit, and torch's own threads (``threads``) parallelise inside a
block. dask's nanny restarts a worker that dies or exceeds its limit, and the scheduler runs
the blocks it held again elsewhere.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from dineuro.errors import InputError

#: dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536 (to hand memory back to the
#: system sooner). Setting it at all stops glibc from adapting when it maps large blocks, so
#: every large tensor torch allocates is faulted in afresh: timed by hand here (one block, one
#: thread, not a benchmark in the repo), it took 22.9 s instead of 12.0 s, 10.7 s of them in the
#: kernel instead of 1.3 s. Local workers start without it; a
#: scheduler's workers should too (the README says how).
TRIM_VARIABLE = "MALLOC_TRIM_THRESHOLD_"
TRIM_SETTING = f"distributed.nanny.pre-spawn-environ.{TRIM_VARIABLE}"
#: How long to wait for a scheduler given by address before giving up.
CONNECT_TIMEOUT = "30s"


def _distributed():
    try:
        import distributed
    except ImportError as exc:
        raise InputError("a distributed run needs dask.distributed: pip install "
                         "'dineuro[cluster]'.") from exc
    return distributed


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None,
                memory_limit: str | int = "auto") -> Iterator:
    """A ``distributed.Client``: connected to ``scheduler`` (an address such as
    ``tcp://10.0.0.5:8786``, or the JSON file ``dask scheduler --scheduler-file`` writes, as
    on a cluster whose workers start as batch jobs), or to a new local cluster of ``workers``
    processes (default 1), each with ``memory_limit`` ("auto": the machine's memory shared
    between them, or "4GB" or bytes). A local cluster is closed on leaving.

    Raises
    ------
    InputError
        dask.distributed is not installed, both or bad arguments, or the scheduler cannot be
        reached.
    """
    distributed = _distributed()
    if scheduler is not None and workers is not None:
        raise InputError("give either a scheduler address or a number of local workers, not "
                         "both.")
    if scheduler is not None:
        where = ({"scheduler_file": scheduler} if Path(scheduler).is_file()
                 else {"address": scheduler})
        try:
            client = distributed.Client(**where, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(f"cannot reach the dask scheduler at {scheduler} ({exc}).") from exc
        with client:
            yield client
        return
    workers = 1 if workers is None else workers
    if workers < 1:
        raise InputError(f"workers should be at least 1, got {workers}.")
    import dask

    dashboard = ":0" if importlib.util.find_spec("bokeh") else None
    with _without_trim():
        try:
            with dask.config.set({TRIM_SETTING: None}):
                cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                                   processes=True, memory_limit=memory_limit,
                                                   dashboard_address=dashboard,
                                                   silence_logs=logging.ERROR)
        except ValueError as exc:  # an unreadable memory limit
            raise InputError(f"cannot start {workers} local worker(s) with memory limit "
                             f"{memory_limit!r} ({exc}).") from exc
        with cluster, distributed.Client(cluster) as client:
            yield client


@contextlib.contextmanager
def _without_trim() -> Iterator[None]:
    """This process's environment without MALLOC_TRIM_THRESHOLD_ meanwhile: workers inherit
    it, and a nanny that started earlier in this process with dask's settings put it there."""
    saved = os.environ.pop(TRIM_VARIABLE, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[TRIM_VARIABLE] = saved


def dashboard_link(client) -> str | None:
    """The address of the cluster's dashboard, or None when it has none (bokeh missing, or
    started without one)."""
    if "dashboard" not in client.scheduler_info().get("services", {}):
        return None
    return client.dashboard_link
