"""The ``bpl`` command line: list, train, reproduce the paper, compare TD(λ) with BP(λ), report,
sweep, tune, benchmark.

    bpl list                                       envs, learners, experiments and presets
    bpl train bpl/SequentialDigits-v0 --learner bp_lambda --updates 500 --lam 0.5 --core lstm
    bpl train --resume runs/my_run                 continue an interrupted run exactly
    bpl reproduce toy --quick                      a paper experiment: table, JSON and figures
    bpl reproduce --resume results/copy-repeat     continue an interrupted reproduction exactly
    bpl report --readme README.md                  README tables from committed results.json
    bpl compare --quick                            TD(λ) and BP(λ) side by side
    bpl sweep my_grid.yaml --workers 2             a grid of runs, one process per run
    bpl tune tune_digits --trials 12 --workers 2   an Optuna search; rerun it to resume
    bpl benchmark learners --configs a --threads 1 a benchmark script of the checkout

``python -m agents.cli`` works the same. Every sub-command has ``--help``. Mistyped names (env id,
learner, hyper-parameter, experiment) stop the command with the list of valid choices before
anything runs or is written; existing output folders are only replaced with ``--force``.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
import yaml

import bpl_envs
from agents.cli_parser import BENCHMARKS, build_parser
from agents.experiments import EXPERIMENTS, reproduce, resume_reproduction
from agents.experiments.config import preset_names, read_yaml
from agents.experiments.hyperparameters import hyperparameters_of
from agents.experiments.output import OutputExistsError, OutputNotWritableError
from agents.experiments.report import render_block, update_markdown
from agents.experiments.run_config import RunConfig, learner_class, learner_names
from agents.experiments.sweep import run_sweep
from agents.experiments.training import resume, train
from agents.experiments.tune import run_tune
from agents.registry import ENTRY_POINT_GROUP, plugin_errors

__all__ = ["main"]

USER_ERRORS = (
    ValueError,
    TypeError,
    FileNotFoundError,
    NotADirectoryError,
    OutputExistsError,
    OutputNotWritableError,
)
"""What a mistyped command raises (a bad value, a missing file, an output folder that cannot be
used): reported as a usage error (exit status 2), no traceback."""

BENCHMARK_DIR = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


# --------------------------------------------------------------------------------- list
def _list(args, parser: argparse.ArgumentParser) -> int:
    def section(title: str, items: dict[str, str]) -> None:
        print(title)
        width = max(len(name) for name in items)
        for name, description in items.items():
            print(f"  {name:<{width}}  {description}")
        print()

    section("Environments (gym ids; `import bpl_envs` registers them):", bpl_envs.ENV_IDS)
    section("Learners (bpl train ENV_ID --learner NAME):", learner_names())
    broken = plugin_errors()
    if broken:
        section(f"Learner entry points that failed to load ({ENTRY_POINT_GROUP}):", broken)
    section(
        "Experiments (bpl reproduce NAME; compare is also `bpl compare`):",
        {name: e.description for name, e in EXPERIMENTS.items()},
    )
    section(
        "Benchmarks (bpl benchmark NAME, from a source checkout):",
        {name: description for name, (_, description) in BENCHMARKS.items()},
    )
    print("Presets (--config NAME): " + ", ".join(preset_names()))
    if args.learner is not None:
        try:
            cls = learner_class(args.learner)
        except ValueError as error:
            parser.error(str(error))
        print(f"\nHyper-parameters of {args.learner} ({cls.__module__}.{cls.__name__}):")
        parameters = hyperparameters_of(cls)
        width = max(len(name) for name in parameters) + 2
        for name, parameter in parameters.items():
            print(f"  {'--' + name.replace('_', '-'):<{width}}  {parameter.describe()}")
    return 0


# -------------------------------------------------------------------------------- train
def _split_hyperparameters(
    tokens: Sequence[str], known: set[str], parser
) -> tuple[list[str], dict[str, str]]:
    """Take the ``--name value`` / ``--name=value`` pairs that are not ``bpl train`` options out
    of ``tokens`` (before argparse, whose optional ENV_ID would swallow their values).

    Returns:
        (the remaining tokens for argparse, hyper-parameter name -> text value).
    """
    rest: list[str] = []
    given: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        name, has_value, value = token[2:].partition("=")
        if not token.startswith("--") or token == "--" or f"--{name}" in known:
            rest.append(token)
            i += 1
            continue
        if not has_value:
            if i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
                parser.error(f"hyper-parameter --{name} needs a value")
            value = tokens[i + 1]
            i += 1
        key = name.replace("-", "_")
        if key in given:
            parser.error(f"hyper-parameter --{name} is given twice")
        given[key] = value
        i += 1
    return rest, given


def _parse_env_args(items: Sequence[str], parser) -> dict[str, Any]:
    env_kwargs = {}
    for item in items:
        key, has_value, text = item.partition("=")
        if not has_value or not key:
            parser.error(f"--env-arg expects KEY=VALUE, got {item!r}")
        try:
            env_kwargs[key.replace("-", "_")] = read_yaml(text) if text else ""
        except yaml.YAMLError as error:
            parser.error(f"--env-arg {key}: {text!r} is not a YAML value ({error})")
    return env_kwargs


def _train(args, hyperparameters: dict[str, str], parser: argparse.ArgumentParser) -> int:
    torch.set_num_threads(args.threads)  # (1 unless --threads says otherwise)
    if args.resume is not None:
        fixed = {
            "ENV_ID": args.env,
            "--learner": args.learner,
            "--config": args.config,
            "--num-envs": args.num_envs,
            "--seed": args.seed,
            "--out": args.out,
            "--save-every": args.save_every,
            "--log-interval": args.log_interval,
        }
        clashes = [flag for flag, value in fixed.items() if value is not None]
        clashes += ["--env-arg"] * bool(args.env_arg) + ["--force"] * args.force
        clashes += [f"--{name}" for name in hyperparameters]
        if clashes:
            parser.error(
                f"--resume continues the run as recorded in its run.json; it cannot "
                f"be combined with {clashes} (only --steps/--updates, to change the "
                "budget)"
            )
        try:
            metrics = resume(
                args.resume, steps=args.steps, updates=args.updates, progress=not args.no_progress
            )
        except KeyboardInterrupt:
            return _interrupted(args.resume)
        except USER_ERRORS as error:
            parser.error(str(error))
        return _report_run(args.resume, metrics)

    out = args.out
    try:
        if args.config is not None:
            base, unused = RunConfig.from_file(args.config)
            if unused:
                print(
                    f"bpl train: {args.config}: training the run it describes (its "
                    f"{', '.join(unused)} section is for `bpl reproduce`)"
                )
            data = base.to_dict()
        else:
            data = {}
        if args.env is not None:
            data["env"] = args.env
        if "env" not in data:
            parser.error("give an ENV_ID (see `bpl list`) or --config FILE")
        data.setdefault("learner", "bp_lambda")
        if args.learner is not None and args.learner != data["learner"]:
            data["hyperparameters"] = _keep_accepted(
                data.get("hyperparameters", {}), args.learner, args.config
            )
            data["learner"] = args.learner
        if args.steps is not None or args.updates is not None:
            data["steps"], data["updates"] = args.steps, args.updates
        if data.get("steps") is None and data.get("updates") is None:
            parser.error("give a budget: --steps N (env transitions) or --updates N (batches)")
        for key in ("num_envs", "seed", "save_every", "log_interval"):
            if getattr(args, key) is not None:
                data[key] = getattr(args, key)
        data["env_kwargs"] = {**data.get("env_kwargs", {}), **_parse_env_args(args.env_arg, parser)}
        data["hyperparameters"] = {**data.get("hyperparameters", {}), **hyperparameters}
        config = RunConfig.from_mapping(data, where="bpl train")
        out = out or _default_run_dir(config)
        metrics = train(config, out, force=args.force, progress=not args.no_progress)
    except KeyboardInterrupt:
        return _interrupted(out)
    except USER_ERRORS as error:
        parser.error(str(error))
    return _report_run(out, metrics)


def _keep_accepted(hyperparameters: dict[str, Any], learner: str, config: str) -> dict[str, Any]:
    """The config file's hyper-parameters that ``learner`` takes (saying which it does not)."""
    accepted = hyperparameters_of(learner_class(learner))
    dropped = sorted(set(hyperparameters) - set(accepted))
    if dropped:
        print(f"bpl train: {learner} does not take {dropped} from {config}; using the others")
    return {k: v for k, v in hyperparameters.items() if k in accepted}


def _default_run_dir(config) -> str:
    env_name = config.env.split("/")[-1]
    return str(pathlib.Path("runs") / f"{env_name}_{config.learner}_seed{config.seed}")


def _interrupted(out) -> int:
    print(
        f"\nbpl train: interrupted. The state at the end of the last complete batch is in "
        f"{out}/checkpoint.pt and the logs are closed; continue with: bpl train --resume "
        f"{out}",
        file=sys.stderr,
    )
    return 130


def _report_run(out, metrics: dict[str, Any]) -> int:
    final = ", ".join(f"{k} {v:.4g}" for k, v in metrics["final"].items())
    print(
        f"bpl train: {metrics['status']} after {metrics['num_timesteps']} steps "
        f"({metrics['num_episodes']} batches, {metrics['elapsed_s']:.0f} s); final "
        f"(last 10% of batches): {final or 'nothing logged'}"
    )
    print(
        f"bpl train: results in {out}/ (progress.csv, TensorBoard events, checkpoint.pt, "
        "learning_curve.png, metrics.json)"
    )
    return 0


# ------------------------------------------------------------------ reproduce / compare
def _reproduce(args, name: str | None, parser: argparse.ArgumentParser) -> int:
    resume_dir = getattr(args, "resume", None)
    if name is not None and name not in EXPERIMENTS:
        parser.error(f"unknown experiment {name!r}; choose one of {list(EXPERIMENTS)}")
    run: Callable[[], dict[str, Any]]
    if resume_dir is not None:
        given = {
            "--quick": args.quick,
            "--seeds": args.seeds,
            "--config": args.config,
            "--out": args.out,
            "--force": args.force,
            "--mnist-root": args.mnist_root,
            "--learners": args.learners,
            "--adopt": args.adopt,
        }
        clashes = [flag for flag, value in given.items() if value not in (None, False)]
        if clashes:
            parser.error(
                f"--resume continues the reproduction as recorded in its reproduction.json; it "
                f"cannot be combined with {clashes} (only --updates, --workers, --report-only "
                "and --no-progress)"
            )
        out = resume_dir

        def run() -> dict[str, Any]:
            return resume_reproduction(
                resume_dir,
                name=name,
                updates=args.updates,
                progress=not args.no_progress,
                workers=args.workers,
                report_only=args.report_only,
                checkpoint_seconds=args.checkpoint_seconds,
            )
    else:
        if name is None:
            parser.error(f"give an EXPERIMENT (one of {list(EXPERIMENTS)}) or --resume DIR")
        if getattr(args, "report_only", False):
            parser.error(
                "--report-only rewrites the results of a reproduction folder: give it with "
                "--resume DIR"
            )
        experiment = name
        options = {"mnist_root": getattr(args, "mnist_root", None)}
        out = args.out or str(pathlib.Path("results") / (name + ("_quick" if args.quick else "")))

        def run() -> dict[str, Any]:
            return reproduce(
                experiment,
                out=out,
                quick=args.quick,
                seeds=args.seeds,
                config=args.config,
                updates=args.updates,
                learners=getattr(args, "learners", None),
                adopt=getattr(args, "adopt", None),
                force=args.force,
                progress=not args.no_progress,
                workers=args.workers,
                checkpoint_seconds=getattr(args, "checkpoint_seconds", 60),
                **options,
            )

    try:
        result = run()
    except KeyboardInterrupt:
        if (pathlib.Path(out) / "cells").is_dir():
            print(
                f"\nbpl reproduce: interrupted. Finished cells and the checkpoints of the others "
                f"are in {out}/cells/; continue with: bpl reproduce --resume {out}",
                file=sys.stderr,
            )
        else:
            print(f"\nbpl: interrupted before the results were written to {out}/", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        parser.error(str(error))
    print(result["table"])
    partial = " (partial)" if result.get("partial") else ""
    print(
        f"{result['command']}: {result['elapsed_s']:.0f} s; results{partial} in {out}/ "
        "(results.md, results.json, " + ", ".join(result["figures"]) + ")"
    )
    return 0


# ------------------------------------------------------------------------------- report
def _report(args, parser: argparse.ArgumentParser) -> int:
    if args.readme is None and not args.folders:
        parser.error("give results folders to print, or --readme FILE to rewrite its blocks")
    if args.check and args.readme is None:
        parser.error("--check compares the blocks of --readme FILE")
    stale: list[str] = []
    try:
        for folder in args.folders:
            print(render_block(folder, pathlib.Path(".")))
        if args.readme is not None:
            stale = update_markdown(args.readme, write=not args.check)
    except USER_ERRORS as error:
        parser.error(str(error))
    if args.readme is None:
        return 0
    if not stale:
        print(f"bpl report: every block of {args.readme} matches its results.json")
        return 0
    verb = "differ from" if args.check else "were rewritten from"
    print(f"bpl report: the blocks of {args.readme} for {stale} {verb} their results.json")
    return 1 if args.check else 0


# -------------------------------------------------------------------------------- sweep
def _sweep(args, parser: argparse.ArgumentParser) -> int:
    out = args.out or str(pathlib.Path("sweeps") / pathlib.Path(args.config).stem)
    try:
        summary = run_sweep(
            args.config,
            out,
            backend=args.backend,
            workers=args.workers,
            force=args.force,
            progress=not args.no_progress,
            ray_address=args.ray_address,
        )
    except KeyboardInterrupt:
        print(
            f"\nbpl sweep: interrupted; the runs that finished are in {out}/, without a summary",
            file=sys.stderr,
        )
        return 130
    except (*USER_ERRORS, ImportError, ConnectionError) as error:
        parser.error(str(error))
    print(summary["table"])
    print(
        f"bpl sweep: {len(summary['runs'])} runs in {summary['elapsed_s']:.0f} s; results in "
        f"{out}/ (summary.md, summary.json, one folder per run)"
    )
    return 0


# --------------------------------------------------------------------------------- tune
def _tune(args, parser: argparse.ArgumentParser) -> int:
    out = args.out or str(pathlib.Path("tunes") / pathlib.Path(args.config).stem)
    try:
        results = run_tune(
            args.config,
            out,
            trials=args.trials,
            backend=args.backend,
            workers=args.workers,
            force=args.force,
            progress=not args.no_progress,
            ray_address=args.ray_address,
        )
    except KeyboardInterrupt:
        print(
            f"\nbpl tune: interrupted; the finished trials are in {out}/study.db (results.md "
            f"shows them). Resume with the same command: bpl tune {args.config} --trials "
            f"{args.trials} --out {out}",
            file=sys.stderr,
        )
        return 130
    except (*USER_ERRORS, ImportError, ConnectionError) as error:
        parser.error(str(error))
    print(results["table"])
    counts = ", ".join(f"{n} {state}" for state, n in results["counts"].items() if n)
    best = results["best"]
    if best is not None:
        print(
            f"bpl tune: best trial {best['number']}: {results['metric']} {best['value']:.4g} "
            f"with {best['params']}"
        )
    figures = ", ".join(results["figures"] or ["no figure before a trial completes"])
    print(f"bpl tune: {counts}; results in {out}/ (results.md, results.json, study.db, {figures})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bpl`` console script; returns the exit status."""
    parser, sub, train_flags = build_parser(__doc__.split("\n\n")[0])
    argv = list(sys.argv[1:] if argv is None else argv)
    hyperparameters: dict[str, str] = {}
    if argv and argv[0] == "train":
        rest, hyperparameters = _split_hyperparameters(argv[1:], train_flags, sub["train"])
        argv = ["train", *rest]
    args = parser.parse_args(argv)
    if args.command == "list":
        return _list(args, sub["list"])
    if args.command == "train":
        return _train(args, hyperparameters, sub["train"])
    if args.command == "reproduce":
        return _reproduce(args, args.experiment, sub["reproduce"])
    if args.command == "compare":
        return _reproduce(args, "compare", sub["compare"])
    if args.command == "report":
        return _report(args, sub["report"])
    if args.command == "benchmark":
        return _benchmark(args.name, args.script_args, sub["benchmark"])
    if args.command == "tune":
        return _tune(args, sub["tune"])
    return _sweep(args, sub["sweep"])


# ---------------------------------------------------------------------------- benchmark
def _benchmark(name: str, script_args: list[str], parser: argparse.ArgumentParser) -> int:
    """Run ``benchmarks/<script>`` of the checkout in a fresh interpreter; return its status."""
    script = BENCHMARK_DIR / BENCHMARKS[name][0]
    if not script.is_file():
        parser.error(
            f"{script} not found: the benchmark scripts are not installed with the "
            "package; run `bpl benchmark` from an editable install of a source "
            "checkout (`make install`)"
        )
    return subprocess.run(
        [sys.executable, str(script), *script_args], cwd=BENCHMARK_DIR.parent, check=False
    ).returncode


if __name__ == "__main__":
    sys.exit(main())
