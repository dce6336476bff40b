"""BP(lambda)'s per-token trace update against one plain ``torch.bmm`` of the same shapes.

The trace update is what :class:`agents.bp_lambda.BPLambda` does for every token on its trace
path: build the core's Jacobian operator, decay every synthesiser trace in place
(``e <- gamma lambda J e``, tile by tile) while contracting it with the TD error, then add
dg/dtheta and the TD error's contraction with it. Its multiply-adds are those of J e,
B·d·k·P for traces with P columns in total (k = H for the LSTM's dense (2H, H) block, k = d for
the RNN's W_hh); the reference is ``torch.bmm`` of a (B, d, k) and a (B, k, P) tensor into a
fresh (B, d, P) tensor: the same multiply-adds with no structure, no tiling and no
in-place constraint. The two are timed alternately in one process, best of ``--repeats``, and
the ratio of their multiply-adds per second is reported. Usage::

    python benchmarks/trace_update.py [--configs a b c] [--repeats 3] [--threads N]
                                      [--out benchmarks/results/trace_update.json]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from common import CONFIGS, Config, describe, machine_info, write_report

from agents import traces
from agents.cores import make_core
from agents.synthesisers import make_synthesiser

GAMMA_LAMBDA = 0.9


def best_time(function, repeats: int) -> float:
    function()  # warm-up (allocations, BLAS initialisation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(config: Config, repeats: int, dtype: torch.dtype) -> dict:
    generator = torch.Generator().manual_seed(0)
    batch, d, n_in = config.batch_size, config.state_size, config.input_size
    core = make_core(config.core, n_in, config.hidden_size).to(dtype)
    synthesiser = make_synthesiser(d).to(dtype)
    with torch.no_grad():
        for parameter in (*core.parameters(), *synthesiser.parameters()):
            parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator, dtype=dtype))
        s = torch.randn(batch, d, generator=generator, dtype=dtype)
        _, cache = core.step(torch.randn(batch, n_in, generator=generator, dtype=dtype), s)
    delta = torch.randn(batch, d, generator=generator, dtype=dtype)
    trace_list = [
        0.01 * torch.randn(shape, generator=generator, dtype=dtype)
        for shape in synthesiser.trace_shapes(batch)
    ]
    scratch = traces.decay_scratch(max(trace_list, key=torch.Tensor.numel))

    def trace_update() -> None:
        jacobian = core.jacobian_operator(cache)
        increments = synthesiser.parameter_vjp(s, delta)
        for trace, increment in zip(trace_list, increments, strict=True):
            traces.decay_trace_(
                trace, GAMMA_LAMBDA, jacobian, scratch=scratch, delta_t=delta, increment=increment
            )
        synthesiser.add_parameter_jacobians_(trace_list, s)

    columns = sum(trace[0, 0].numel() for trace in trace_list)
    inner = config.hidden_size if config.core == "lstm" else d
    multiply_adds = batch * d * inner * columns
    left = torch.randn(batch, d, inner, generator=generator, dtype=dtype)
    right = torch.randn(batch, inner, columns, generator=generator, dtype=dtype)
    product = torch.empty(batch, d, columns, dtype=dtype)

    bmm_times, update_times = [], []
    for _ in range(repeats):  # alternate, so both see the same machine state
        bmm_times.append(best_time(lambda: torch.bmm(left, right, out=product), 1))
        update_times.append(best_time(trace_update, 1))
    bmm_rate = multiply_adds / min(bmm_times)
    update_rate = multiply_adds / min(update_times)
    trace_bytes = sum(trace.numel() * trace.element_size() for trace in trace_list)
    return {
        "config": config.name,
        "description": config.description,
        "dtype": str(dtype),
        "trace_bytes": trace_bytes,
        "scratch_bytes": scratch.numel() * scratch.element_size(),
        "multiply_adds_per_update": multiply_adds,
        "bmm_seconds": min(bmm_times),
        "trace_update_seconds": min(update_times),
        "bmm_gmac_per_s": bmm_rate / 1e9,
        "trace_update_gmac_per_s": update_rate / 1e9,
        "fraction_of_bmm": update_rate / bmm_rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/trace_update.json"))
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)

    info = machine_info()
    print(describe(info))
    print(
        f"\n{'config':<48} {'trace MB':>9} {'bmm GMAC/s':>11} {'update GMAC/s':>14} {'fraction':>9}"
    )
    results = []
    for name in args.configs:
        row = measure(CONFIGS[name], args.repeats, getattr(torch, args.dtype))
        results.append(row)
        print(
            f"({name}) {row['description']:<44} {row['trace_bytes'] / 1e6:>9.1f} "
            f"{row['bmm_gmac_per_s']:>11.1f} {row['trace_update_gmac_per_s']:>14.1f} "
            f"{row['fraction_of_bmm']:>8.0%}",
            flush=True,
        )
    info["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    write_report(args.out, {"machine": info, "gamma_lambda": GAMMA_LAMBDA, "results": results})


if __name__ == "__main__":
    main()
