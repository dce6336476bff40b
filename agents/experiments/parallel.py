"""Run independent jobs ("cells" of an experiment grid) in worker processes or on a Ray cluster.

A cell is the keyword arguments of a module-level function (picklable, so that a fresh process
can import and call it). Locally, cells run in a ``concurrent.futures.ProcessPoolExecutor``
started with ``spawn`` (a clean interpreter: no inherited torch/OpenMP thread state) whose
workers use one torch thread each, so N workers use N cores without oversubscription. Results
come back in the order of the cells whatever the order they finish in.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from tqdm.auto import tqdm

from bpl_envs.checks import check_int

__all__ = ["BACKENDS", "default_workers", "require_ray", "run_cells", "stop_requested"]

BACKENDS = ("local", "ray")

_STOP = None
"""In a worker process: the event its pool sets when the caller stops (Ctrl-C, an error)."""


def default_workers() -> int:
    """The number of CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _init_worker(stop=None) -> None:
    import torch

    global _STOP
    torch.set_num_threads(1)
    _STOP = stop


def stop_requested() -> bool:
    """In a worker process of :func:`run_cells`: whether the caller has stopped (Ctrl-C or an
    error) and asks the running cells to stop at their next safe point (False elsewhere)."""
    return _STOP is not None and _STOP.is_set()


def _check_workers(workers: Any) -> int:
    return check_int("workers", workers, minimum=1)


def run_cells(
    function: Callable[..., Any],
    cells: Sequence[dict[str, Any]],
    *,
    workers: int = 1,
    backend: str = "local",
    progress: bool = False,
    desc: str = "runs",
    on_result: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """``[function(**cell) for cell in cells]``, in parallel.

    Args:
        function: a module-level function (workers import it by name).
        cells: keyword arguments of each call (picklable plain data).
        workers: processes (local backend). 1 runs the cells here, one after the other.
        backend: ``"local"`` or ``"ray"`` (needs ``pip install 'bp-lambda[ray]'``; connects to
            the cluster named by ``RAY_ADDRESS``, or starts a local one).
        progress: show a progress bar over the cells.
        desc: the bar's label.
        on_result: called here as ``on_result(index, result)`` each time a cell finishes.

    Returns:
        The results, in the order of ``cells``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    workers = _check_workers(workers)
    if backend == "ray":
        return _run_on_ray(function, cells, progress=progress, desc=desc, on_result=on_result)
    bar = tqdm(total=len(cells), desc=desc, disable=not progress, dynamic_ncols=True)
    try:
        if workers == 1 or len(cells) <= 1:
            results = []
            for index, cell in enumerate(cells):
                results.append(function(**cell))
                bar.update(1)
                if on_result is not None:
                    on_result(index, results[-1])
            return results
        context = multiprocessing.get_context("spawn")
        stop = context.Event()
        with ProcessPoolExecutor(min(workers, len(cells)), mp_context=context,
                                 initializer=_init_worker, initargs=(stop,)) as pool:
            futures = {pool.submit(function, **cell): i for i, cell in enumerate(cells)}
            results: list[Any] = [None] * len(cells)
            try:
                for future in as_completed(futures):
                    index = futures[future]
                    results[index] = future.result()
                    bar.update(1)
                    if on_result is not None:
                        on_result(index, results[index])
            except BaseException:
                stop.set()  # running cells stop at their next safe point (stop_requested)
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            return results
    finally:
        bar.close()


def require_ray():
    """The ``ray`` module, or an ImportError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError(
            "the ray backend needs Ray, which is not installed: pip install 'bp-lambda[ray]'"
        ) from None
    return ray


def _run_on_ray(function, cells, *, progress: bool, desc: str, on_result) -> list[Any]:
    """Each cell as a Ray task (one CPU each); the cluster is the one Ray finds or a local one."""
    ray = require_ray()
    if not ray.is_initialized():
        ray.init()
    remote = ray.remote(num_cpus=1)(_ray_cell)
    pending = [remote.remote(function, cell) for cell in cells]
    order = {ref: i for i, ref in enumerate(pending)}
    results: list[Any] = [None] * len(cells)
    with tqdm(total=len(cells), desc=desc, disable=not progress) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            index = order[done[0]]
            results[index] = ray.get(done[0])
            bar.update(1)
            if on_result is not None:
                on_result(index, results[index])
    return results


def _ray_cell(function, cell):
    _init_worker()
    return function(**cell)
