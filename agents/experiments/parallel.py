"""Run independent jobs ("cells" of an experiment grid) in worker processes or on a Ray cluster.

A cell is the keyword arguments of a module-level function (picklable, so that a fresh process
can import and call it). Locally, cells run in a ``concurrent.futures.ProcessPoolExecutor``
started with ``spawn`` (a clean interpreter: no inherited torch/OpenMP thread state) whose
workers use one torch thread each, so N workers use N cores without oversubscription, and
register the learners the parent registered with :func:`agents.register_learner` (those of
installed entry points each process finds itself). Results come back in the order of the cells
whatever the order they finish in.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing.synchronize import Event
from typing import Any

from tqdm.auto import tqdm

from bpl_envs.checks import check_int

__all__ = [
    "BACKENDS",
    "connect_ray",
    "default_workers",
    "require_ray",
    "run_cells",
    "stop_requested",
]

BACKENDS = ("local", "ray")
RAY_CONNECT_TIMEOUT_S = 5.0
"""How long :func:`connect_ray` waits for a TCP connection to a cluster's address (``ray.init``
itself was still waiting after 10 minutes for an address where nothing listens)."""

_STOP: Event | None = None
"""In a worker process: the event its pool sets when the caller stops (Ctrl-C, an error)."""


def default_workers() -> int:
    """The number of CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _init_worker(
    registrations: Sequence[tuple[str, type, str]] = (), stop: Event | None = None
) -> None:
    """One torch thread; the learners the parent registered with ``register_learner`` (entry
    points are read by each process itself); the pool's stop event (:func:`stop_requested`)."""
    import torch

    from agents.registry import register_learner

    global _STOP
    torch.set_num_threads(1)
    _STOP = stop
    for name, cls, description in registrations:  # replace=True: over an entry point's, as there
        register_learner(name, cls, description, replace=True)


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
    ray_address: str | None = None,
    on_result: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """``[function(**cell) for cell in cells]``, in parallel.

    Args:
        function: a module-level function (workers import it by name).
        cells: keyword arguments of each call (picklable plain data).
        workers: processes (local backend). 1 runs the cells here, one after the other.
        backend: ``"local"`` or ``"ray"`` (needs ``pip install 'bp-lambda[ray]'``; each cell is
            a Ray task with one CPU, on the cluster :func:`connect_ray` connects to).
        progress: show a progress bar over the cells.
        desc: the bar's label.
        ray_address: the Ray cluster (ray backend); see :func:`connect_ray`.
        on_result: called here as ``on_result(index, result)`` each time a cell finishes.

    Returns:
        The results, in the order of ``cells``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    workers = _check_workers(workers)
    if backend == "ray":
        return _run_on_ray(
            function, cells, progress=progress, desc=desc, address=ray_address, on_result=on_result
        )
    bar = tqdm(total=len(cells), desc=desc, disable=not progress, dynamic_ncols=True)
    try:
        if workers == 1 or len(cells) <= 1:
            in_order = []
            for index, cell in enumerate(cells):
                in_order.append(function(**cell))
                bar.update(1)
                if on_result is not None:
                    on_result(index, in_order[-1])
            return in_order
        from agents.registry import registered_in_process

        context = multiprocessing.get_context("spawn")
        stop = context.Event()
        with ProcessPoolExecutor(
            min(workers, len(cells)),
            mp_context=context,
            initializer=_init_worker,
            initargs=(registered_in_process(), stop),
        ) as pool:
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


def connect_ray(address: str | None = None):
    """The ``ray`` module, initialised: the instance this process already started or joined, else
    the cluster at ``address``, else a new local instance.

    Args:
        address: ``"HOST:PORT"`` (what ``ray start --head`` prints), ``"ray://HOST:PORT"`` (Ray
            Client) or ``"auto"`` (the cluster running on this machine). None: the
            ``RAY_ADDRESS`` environment variable if set, else start a local instance.

    Raises:
        ImportError: Ray is not installed (saying how to install it).
        ValueError: ``address`` is not of one of those forms.
        ConnectionError: nothing answers at ``address`` within :data:`RAY_CONNECT_TIMEOUT_S`
            seconds (the message names the address).
    """
    ray = require_ray()
    if ray.is_initialized():
        return ray
    if address is None:
        address = os.environ.get("RAY_ADDRESS") or None
    if address is not None and address != "auto":
        _check_reachable(address)
    ray.init(address=address)
    return ray


def _check_reachable(address: str) -> None:
    """Open (and close) a TCP connection to the ``[ray://]HOST:PORT`` ``address``."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(
            f"Ray address must be HOST:PORT, ray://HOST:PORT or 'auto', got {address!r}"
        )
    try:
        socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise ConnectionError(
            f"cannot reach the Ray cluster at {address!r} ({error}); start one with `ray start "
            "--head` (it prints its address) or give a reachable address (--ray-address or "
            "RAY_ADDRESS)"
        ) from None


def _run_on_ray(
    function, cells, *, progress: bool, desc: str, address: str | None, on_result
) -> list[Any]:
    """Each cell as a Ray task (one CPU each), on the cluster of :func:`connect_ray`."""
    from agents.registry import registered_in_process

    ray = connect_ray(address)
    remote = ray.remote(num_cpus=1)(_ray_cell)
    registrations = registered_in_process()
    pending = [remote.remote(function, cell, registrations) for cell in cells]
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


def _ray_cell(function, cell, registrations):
    _init_worker(registrations)
    return function(**cell)
