"""The side-by-side figure: TD(λ) and BP(λ) are one algorithm, so they should look alike.

Left panel: TD(λ) on the 19-state random walk, RMS error of the values against the step size α
(Sutton & Barto's Figure 12.6). Right panel: BP(λ) on the toy task (LineDraw, frozen linear RNN,
only the synthesiser learns), alignment of g(s_t) with the true future gradient against the
synthesiser's learning rate. Same λ grid, same colour per λ in both panels. In both, larger λ
means less bootstrapping: better at a suitable step size, less forgiving of a large one.

``bpl compare`` writes:

- ``results.md``: per λ, TD(λ)'s best α and RMS there, BP(λ)'s best learning rate and the
  alignment there (mean ± std over seeds);
- ``results.json``: ``experiment``, ``quick``, ``seeds``, ``elapsed_s``, ``config``, ``lambdas``,
  ``alphas``, ``rms`` (λ -> RMS per α, mean over seeds; null where diverged), ``lr_synth``,
  ``alignment`` (λ -> ``{"mean", "std"}`` per learning rate) and ``results`` (one row per λ:
  ``lam``, ``td_best_alpha``, ``td_best_rms``, ``bp_best_lr_synth``, ``bp_best_alignment``);
- ``compare.png``: the two panels.
"""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import numpy as np

from agents.experiments.output import (
    format_mean_std,
    markdown_table,
    mean_std,
    new_figure,
    over_seeds,
    save_figure,
)
from agents.experiments.parallel import run_cells
from agents.experiments.random_walk import (
    TRACE_TITLES,
    lambda_colours,
    plot_rms_curves,
    sweep,
    walk_seed,
)
from agents.experiments.run_config import RunConfig
from agents.experiments.toy import alignment_cell

__all__ = ["check", "run", "with_updates"]


def _cell(kind: str, arguments: dict[str, Any]) -> Any:
    """One cell of either panel (so that both panels share one pool of workers)."""
    if kind == "random_walk":
        return sweep(**arguments)
    return float(np.mean(alignment_cell(**arguments)))


def with_updates(config: dict[str, Any], updates: int) -> dict[str, Any]:
    """The preset with the toy runs' budget set to ``updates`` batches (the random walk's budget
    is in episodes and stays)."""
    config = copy.deepcopy(config)
    run = config["experiment"]["toy"]["run"]
    run.pop("steps", None)
    run["updates"] = updates
    return config


def check(config: dict[str, Any]) -> None:
    """Validate the preset (the toy run and the trace kind) before anything runs."""
    settings = config["experiment"]
    RunConfig.from_mapping(settings["toy"]["run"], where="experiment.toy.run").resolved()
    if settings["random_walk"]["trace"] not in TRACE_TITLES:
        raise ValueError(
            f"experiment.random_walk.trace must be one of {sorted(TRACE_TITLES)}, "
            f"got {settings['random_walk']['trace']!r}"
        )


def run(
    config: dict[str, Any], out: pathlib.Path, seeds: list[int], *, progress: bool, workers: int
):
    """Compute both panels; return (table, json data, figure paths)."""
    settings = config["experiment"]
    lambdas = [float(v) for v in settings["lambdas"]]
    walk = settings["random_walk"]
    toy = settings["toy"]
    alphas = np.linspace(0.0, 1.0, int(walk["n_alphas"]))
    rates = [float(v) for v in toy["lr_synth"]]
    base = RunConfig.from_mapping(toy["run"], where="experiment.toy.run")

    cells = [
        {
            "kind": "random_walk",
            "arguments": {
                "trace": walk["trace"],
                "lambdas": lambdas,
                "alphas": alphas,
                "runs": int(walk["runs"]),
                "episodes": int(walk["episodes"]),
                "n_states": int(walk["n_states"]),
                "seed": walk_seed(seed, int(walk["runs"])),
            },
        }
        for seed in seeds
    ]
    toy_keys = [(lam, rate, seed) for lam in lambdas for rate in rates for seed in seeds]
    cells += [
        {
            "kind": "toy",
            "arguments": {
                "config": base.derive(
                    hyperparameters={"lam": lam, "lr_synth": rate}, seed=seed
                ).to_dict(),
                "eval_sequences": int(toy["eval_sequences"]),
                "eval_seed": 10_000 + seed,
            },
        }
        for lam, rate, seed in toy_keys
    ]
    results = run_cells(
        _cell, cells, workers=workers, progress=progress, desc="compare: random walk + toy cells"
    )
    rms_per_seed = np.stack(results[: len(seeds)])  # (seeds, lambdas, alphas)
    alignment = dict(zip(toy_keys, results[len(seeds) :], strict=True))

    rms = rms_per_seed.mean(0)
    rows, table_rows, alignment_curves = [], [], {}
    for i, lam in enumerate(lambdas):
        finite = np.where(np.isfinite(rms[i]), rms[i], np.inf)
        best_alpha = int(np.argmin(finite))
        per_rate = np.array([[alignment[(lam, rate, s)] for s in seeds] for rate in rates])
        best_rate = int(np.argmax(per_rate.mean(1)))
        td_best_rms = mean_std(rms_per_seed[:, i, best_alpha])
        bp_best_alignment = mean_std(per_rate[best_rate])
        rows.append(
            {
                "lam": lam,
                "td_best_alpha": float(alphas[best_alpha]),
                "td_best_rms": td_best_rms,
                "bp_best_lr_synth": rates[best_rate],
                "bp_best_alignment": bp_best_alignment,
            }
        )
        alignment_curves[f"{lam:g}"] = {
            "mean": per_rate.mean(1),
            "std": per_rate.std(1, ddof=1) if len(seeds) > 1 else None,
        }
        table_rows.append(
            [
                f"{lam:g}",
                f"{alphas[best_alpha]:.2f}",
                format_mean_std(td_best_rms),
                f"{rates[best_rate]:.0e}",
                format_mean_std(bp_best_alignment),
            ]
        )
    header = ["λ", "TD(λ) best α", "TD(λ) RMS", "BP(λ) best lr_synth", "BP(λ) alignment"]
    table = (
        f"TD(λ) ({TRACE_TITLES[walk['trace']]}): RMS error over the first {walk['episodes']} "
        f"episodes of {walk['runs']} runs of the {walk['n_states']}-state random walk. BP(λ): "
        f"mean alignment of g(s_t) with G_t on LineDraw (T = "
        f"{base.env_kwargs.get('sequence_length', 'default')}, frozen RNN) after "
        f"{base.updates} updates; {over_seeds(len(seeds))}.\n\n"
        + markdown_table(header, table_rows)
    )

    colours = lambda_colours(lambdas)
    fig, axes = new_figure(1, 2, figsize=(10, 3.8))
    left, right = axes[0]
    plot_rms_curves(left, alphas, lambdas, rms, colours, ylim=(0.2, 0.8))  # λ = 1 shoots up
    left.set(
        title=f"TD(λ): random walk, {TRACE_TITLES[walk['trace']]}",
        ylabel=f"RMS error, first {walk['episodes']} episodes",
    )
    for colour, lam in zip(colours, lambdas, strict=True):
        curve = alignment_curves[f"{lam:g}"]
        right.errorbar(
            rates,
            curve["mean"],
            yerr=curve["std"],
            color=colour,
            marker="o",
            ms=3,
            capsize=2,
            label=f"λ = {lam:g}",
        )
    right.set(
        xscale="log",
        xlabel="synthesiser learning rate",
        ylabel="mean cos(g(s_t), G_t)",
        title="BP(λ): toy task, frozen RNN",
        ylim=(-0.1, 1.05),
    )
    right.grid(alpha=0.3)
    right.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(
        "The same algorithm twice: a scalar value (TD) and a gradient-valued one (BP)", fontsize=10
    )
    figure = save_figure(fig, out / "compare.png")
    data = {
        "lambdas": lambdas,
        "alphas": alphas,
        "rms": {f"{lam:g}": rms[i] for i, lam in enumerate(lambdas)},
        "lr_synth": rates,
        "alignment": alignment_curves,
        "results": rows,
    }
    return table, data, [figure]
