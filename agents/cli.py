"""The ``bpl`` command line: list, train, reproduce the paper, compare TD(λ) with BP(λ), report,
sweep, benchmark.

    bpl list                                       envs, learners, experiments and presets
    bpl train bpl/SequentialDigits-v0 --learner bp_lambda --updates 500 --lam 0.5 --core lstm
    bpl train --resume runs/my_run                 continue an interrupted run exactly
    bpl reproduce toy --quick                      a paper experiment: table, JSON and figures
    bpl reproduce --resume results/copy-repeat     continue an interrupted reproduction exactly
    bpl report --readme README.md                  README tables from committed results.json
    bpl compare --quick                            TD(λ) and BP(λ) side by side
    bpl sweep my_grid.yaml --workers 2             a grid of runs, one process per run
    bpl benchmark learners --configs a --threads 1 a benchmark script of the checkout

``python -m agents.cli`` works the same. Every sub-command has ``--help``. Mistyped names (env id,
learner, hyper-parameter, experiment) stop the command with the list of valid choices before
anything runs or is written; existing output folders are only replaced with ``--force``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

import yaml

__all__ = ["main"]

USER_ERRORS = (ValueError, TypeError, FileNotFoundError, NotADirectoryError)
"""What a mistyped command raises: reported as a usage error (exit status 2), no traceback."""

TRAIN_EPILOG = """\
hyper-parameters:
  Any constructor argument of the learner, as --name value (or --name=value), e.g.
  --lam 0.5 --hidden-size 64 --core lstm --lr-synth 3e-4 --synth-hidden none.
  Values are converted to the argument's type (true/false for booleans, none for None);
  an unknown name stops with the list of valid ones. `bpl list --learner NAME` shows them.

examples:
  bpl train bpl/SequentialDigits-v0 --learner bp_lambda --num-envs 50 --updates 300 \\
      --core lstm --lam 1 --gamma 0.9 --sg-weight 0.1 --out runs/digits
  bpl train --config copy_repeat_quick --out runs/copy      # a packaged preset
  bpl train --resume runs/digits                             # continue after Ctrl-C
"""

REPRODUCE_EPILOG = """\
budgets:
  Without --quick the paper's budgets are used (agents/configs/NAME.yaml): hours to days on a
  laptop CPU (copy-repeat: 120,000 updates per learner and seed). --quick (NAME_quick.yaml)
  finishes each experiment in a few minutes on 2 cores. --updates N sets every learner's
  budget.

resuming (toy, digits, seqmnist, copy-repeat):
  Every (learner, seed) trains in its own run folder under DIR/cells/ and checkpoints at batch
  boundaries (about once a minute). After Ctrl-C, a crash or a kill, `bpl reproduce --resume
  DIR` continues every unfinished cell from its checkpoint, exactly, and never reruns a
  finished one; `--resume DIR --updates N` extends every cell to N updates; `--resume DIR
  --report-only` rewrites the results from the finished cells without training. The results
  are also rewritten while cells finish, marked as partial until all have.

outputs (in --out):
  results.md         a table of mean ± std over seeds, with the command that made it
  results.json       the same numbers, with the configuration used
  *.png              figures
  reproduction.json  what --resume needs
"""

REPORT_EPILOG = """\
blocks:
  A markdown file marks each generated table with
    <!-- bpl report docs/results/NAME -->
    ...
    <!-- end bpl report -->
  (the folder relative to the file); --readme rewrites what is between the markers from the
  folder's results.json: the command, its wall time, the table and the figures.
"""


BENCHMARKS = {
    "envs": ("envs.py", "native vector envs against Gymnasium's SyncVectorEnv (tokens/s)"),
    "learners": ("learners.py", "tokens/s and peak RSS of every learner on three configurations"),
    "trace-update": ("trace_update.py",
                     "BP(λ)'s trace update against one torch.bmm of the same multiply-adds"),
    "memory": ("memory.py", "peak RSS against sequence length (T = 100, 1000, 10000)"),
}
"""``bpl benchmark NAME``: the script of the checkout's ``benchmarks/`` folder it runs."""

BENCHMARK_DIR = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


def _int_at_least(minimum: int):
    """An argparse ``type``: the text as an int >= ``minimum``, else a usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


_positive_int, _non_negative_int = _int_at_least(1), _int_at_least(0)


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser], set[str]]:
    from agents.experiments.parallel import BACKENDS, default_workers

    parser = argparse.ArgumentParser(
        prog="bpl", description=__doc__.split("\n\n")[0], allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub: dict[str, argparse.ArgumentParser] = {}

    def add(name: str, help_text: str, **kwargs) -> argparse.ArgumentParser:
        sub[name] = commands.add_parser(
            name, help=help_text, description=help_text, allow_abbrev=False,
            formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs,
        )
        return sub[name]

    listing = add("list", "list the registered envs, learners, experiments and presets")
    listing.add_argument("--learner", metavar="NAME",
                         help="also list this learner's hyper-parameters with their defaults")

    train = add("train", "train one learner on one env, with logs, checkpoints and a plot",
                epilog=TRAIN_EPILOG)
    train_flags = {"-h", "--help"}

    def option(group, *flags: str, **kwargs) -> None:
        train_flags.update(flags)
        group.add_argument(*flags, **kwargs)

    train.add_argument("env", nargs="?", metavar="ENV_ID", help="env id, e.g. bpl/LineDraw-v0")
    option(train, "--learner", metavar="NAME",
           help="learner name from `bpl list` (default: bp_lambda)")
    option(train, "--config", metavar="FILE",
           help="YAML run config or packaged preset name; flags override it")
    option(train, "--num-envs", type=_positive_int, metavar="B",
           help="parallel sequences per batch (default 1)")
    budget = train.add_mutually_exclusive_group()
    option(budget, "--steps", type=_positive_int, metavar="N",
           help="budget in env transitions (B per token)")
    option(budget, "--updates", type=_positive_int, metavar="N",
           help="budget in batches of sequences")
    option(train, "--seed", type=_non_negative_int, metavar="S", help="seed (default 0)")
    option(train, "--out", metavar="DIR", help="output folder (default runs/ENV_LEARNER_seedS)")
    option(train, "--save-every", type=_positive_int, metavar="N",
           help="also checkpoint every N steps (always at the end and on Ctrl-C)")
    option(train, "--log-interval", type=_positive_int, metavar="N",
           help="print the metrics every N batches (default 10; CSV gets all)")
    option(train, "--env-arg", action="append", default=[], metavar="KEY=VALUE",
           help="env keyword argument (YAML value), repeatable, e.g. "
                "--env-arg sequence_length=30")
    option(train, "--resume", metavar="DIR",
           help="continue the run in DIR from its checkpoint (exactly, on CPU)")
    option(train, "--threads", type=_positive_int, metavar="N",
           help="torch CPU threads (default: torch's choice; 1 is often fastest for small "
                "models)")
    option(train, "--force", action="store_true", help="replace the content of --out")
    option(train, "--no-progress", action="store_true", help="hide the progress bar")

    def add_experiment_options(command: argparse.ArgumentParser, name: str) -> None:
        command.add_argument("--quick", action="store_true",
                             help="small budgets: a few minutes on 2 cores")
        command.add_argument("--seeds", type=_positive_int, metavar="K",
                             help="number of seeds (default: the preset's)")
        command.add_argument("--out", metavar="DIR", help=f"output folder (default results/"
                                                          f"{name}, or results/{name}_quick)")
        command.add_argument("--config", metavar="FILE",
                             help="a YAML file to use instead of the packaged preset")
        command.add_argument("--updates", type=_positive_int, metavar="N",
                             help="budget of every learner, in batches of sequences (default: "
                                  "the preset's)")
        command.add_argument("--workers", type=_positive_int, default=default_workers(),
                             metavar="N", help="parallel processes (default: the CPU count, "
                                               f"{default_workers()} here)")
        command.add_argument("--force", action="store_true",
                             help="replace the content of --out")
        command.add_argument("--no-progress", action="store_true", help="hide progress bars")

    from agents.experiments import EXPERIMENTS

    reproduce = add("reproduce", "reproduce one of the paper's experiments",
                    epilog=REPRODUCE_EPILOG)
    reproduce.add_argument("experiment", metavar="EXPERIMENT", nargs="?",
                           help=f"one of {', '.join(EXPERIMENTS)} (optional with --resume)")
    add_experiment_options(reproduce, "EXPERIMENT")
    reproduce.add_argument("--mnist-root", metavar="DIR",
                           help="seqmnist only: the full MNIST from the IDX files in DIR "
                                "instead of the bundled 5,000-image subset")
    reproduce.add_argument("--resume", metavar="DIR",
                           help="continue the reproduction in DIR (its unfinished cells, from "
                                "their checkpoints)")
    reproduce.add_argument("--report-only", action="store_true",
                           help="with --resume: rewrite the results from the finished cells, "
                                "train nothing")
    reproduce.add_argument("--checkpoint-seconds", type=_non_negative_int, default=60,
                           metavar="S", help="a cell writes a checkpoint at the first batch "
                                             "boundary S seconds after its last (default 60; "
                                             "0: every batch)")

    compare = add("compare", "TD(λ) on the random walk next to BP(λ) on the toy task: the "
                             "side-by-side figure", epilog=REPRODUCE_EPILOG)
    add_experiment_options(compare, "compare")

    report = add("report", "render README tables from results folders (results.json)",
                 epilog=REPORT_EPILOG)
    report.add_argument("folders", nargs="*", metavar="DIR",
                        help="results folders whose block to print")
    report.add_argument("--readme", metavar="FILE",
                        help="rewrite every generated block of this markdown file")
    report.add_argument("--check", action="store_true",
                        help="with --readme: change nothing, exit 1 when a block is stale")

    sweep = add("sweep", "run a grid of (env, learner, hyper-parameters, seeds) from a YAML "
                         "file, in parallel", epilog=_sweep_epilog())
    sweep.add_argument("config", metavar="CONFIG", help="the grid's YAML file")
    sweep.add_argument("--backend", choices=BACKENDS, default="local",
                       help="local processes (default) or a Ray cluster (pip install "
                            "'bp-lambda[ray]')")
    sweep.add_argument("--workers", type=_positive_int, default=default_workers(), metavar="N",
                       help=f"parallel processes, local backend (default {default_workers()})")
    sweep.add_argument("--out", metavar="DIR", help="output folder (default sweeps/CONFIG)")
    sweep.add_argument("--force", action="store_true", help="replace the content of --out")
    sweep.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    benchmark = add("benchmark", "run one of the benchmark scripts of a source checkout "
                                 "(benchmarks/; see benchmarks/README.md)",
                    epilog="benchmarks:\n" + "".join(
                        f"  {name:<13} {description}\n"
                        for name, (_, description) in BENCHMARKS.items()))
    benchmark.add_argument("name", choices=list(BENCHMARKS), metavar="NAME",
                           help=f"one of {', '.join(BENCHMARKS)}")
    benchmark.add_argument("script_args", nargs=argparse.REMAINDER, metavar="...",
                           help="passed to the script unchanged (`bpl benchmark NAME --help` "
                                "shows its options)")
    return parser, sub, train_flags


def _sweep_epilog() -> str:
    from agents.experiments.sweep import SWEEP_HELP

    return SWEEP_HELP


# --------------------------------------------------------------------------------- list
def _list(args, parser: argparse.ArgumentParser) -> int:
    import bpl_envs
    from agents.experiments import EXPERIMENTS
    from agents.experiments.config import preset_names
    from agents.experiments.hyperparameters import hyperparameters_of
    from agents.experiments.run_config import learner_class, learner_names

    def section(title: str, items: dict[str, str]) -> None:
        print(title)
        width = max(len(name) for name in items)
        for name, description in items.items():
            print(f"  {name:<{width}}  {description}")
        print()

    section("Environments (gym ids; `import bpl_envs` registers them):", bpl_envs.ENV_IDS)
    section("Learners (bpl train ENV_ID --learner NAME):", learner_names())
    section("Experiments (bpl reproduce NAME; compare is also `bpl compare`):",
            {name: e.description for name, e in EXPERIMENTS.items()})
    section("Benchmarks (bpl benchmark NAME, from a source checkout):",
            {name: description for name, (_, description) in BENCHMARKS.items()})
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
def _split_hyperparameters(tokens: Sequence[str], known: set[str], parser) -> tuple[
        list[str], dict[str, str]]:
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
            env_kwargs[key.replace("-", "_")] = yaml.safe_load(text) if text else ""
        except yaml.YAMLError as error:
            parser.error(f"--env-arg {key}: {text!r} is not a YAML value ({error})")
    return env_kwargs


def _train(args, hyperparameters: dict[str, str], parser: argparse.ArgumentParser) -> int:
    from agents.experiments.output import OutputExistsError
    from agents.experiments.run_config import RunConfig
    from agents.experiments.training import resume, train

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    if args.resume is not None:
        fixed = {"ENV_ID": args.env, "--learner": args.learner, "--config": args.config,
                 "--num-envs": args.num_envs, "--seed": args.seed, "--out": args.out,
                 "--save-every": args.save_every, "--log-interval": args.log_interval}
        clashes = [flag for flag, value in fixed.items() if value is not None]
        clashes += ["--env-arg"] * bool(args.env_arg) + ["--force"] * args.force
        clashes += [f"--{name}" for name in hyperparameters]
        if clashes:
            parser.error(f"--resume continues the run as recorded in its run.json; it cannot "
                         f"be combined with {clashes} (only --steps/--updates, to change the "
                         "budget)")
        try:
            metrics = resume(args.resume, steps=args.steps, updates=args.updates,
                             progress=not args.no_progress)
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
                print(f"bpl train: {args.config}: training the run it describes (its "
                      f"{', '.join(unused)} section is for `bpl reproduce`)")
            data = base.to_dict()
        else:
            data = {}
        if args.env is not None:
            data["env"] = args.env
        if "env" not in data:
            parser.error("give an ENV_ID (see `bpl list`) or --config FILE")
        data.setdefault("learner", "bp_lambda")
        if args.learner is not None and args.learner != data["learner"]:
            data["hyperparameters"] = _keep_accepted(data.get("hyperparameters", {}),
                                                     args.learner, args.config)
            data["learner"] = args.learner
        if args.steps is not None or args.updates is not None:
            data["steps"], data["updates"] = args.steps, args.updates
        if data.get("steps") is None and data.get("updates") is None:
            parser.error("give a budget: --steps N (env transitions) or --updates N (batches)")
        for key in ("num_envs", "seed", "save_every", "log_interval"):
            if getattr(args, key) is not None:
                data[key] = getattr(args, key)
        data["env_kwargs"] = {**data.get("env_kwargs", {}),
                              **_parse_env_args(args.env_arg, parser)}
        data["hyperparameters"] = {**data.get("hyperparameters", {}), **hyperparameters}
        config = RunConfig.from_mapping(data, where="bpl train")
        out = out or _default_run_dir(config)
        metrics = train(config, out, force=args.force, progress=not args.no_progress)
    except KeyboardInterrupt:
        return _interrupted(out)
    except (*USER_ERRORS, OutputExistsError) as error:
        parser.error(str(error))
    return _report_run(out, metrics)


def _keep_accepted(hyperparameters: dict[str, Any], learner: str, config: str) -> dict[str, Any]:
    """The config file's hyper-parameters that ``learner`` takes (saying which it does not)."""
    from agents.experiments.hyperparameters import hyperparameters_of
    from agents.experiments.run_config import learner_class

    accepted = hyperparameters_of(learner_class(learner))
    dropped = sorted(set(hyperparameters) - set(accepted))
    if dropped:
        print(f"bpl train: {learner} does not take {dropped} from {config}; using the others")
    return {k: v for k, v in hyperparameters.items() if k in accepted}


def _default_run_dir(config) -> str:
    env_name = config.env.split("/")[-1]
    return str(pathlib.Path("runs") / f"{env_name}_{config.learner}_seed{config.seed}")


def _interrupted(out) -> int:
    print(f"\nbpl train: interrupted. The state at the end of the last complete batch is in "
          f"{out}/checkpoint.pt and the logs are closed; continue with: bpl train --resume "
          f"{out}", file=sys.stderr)
    return 130


def _report_run(out, metrics: dict[str, Any]) -> int:
    final = ", ".join(f"{k} {v:.4g}" for k, v in metrics["final"].items())
    print(f"bpl train: {metrics['status']} after {metrics['num_timesteps']} steps "
          f"({metrics['num_episodes']} batches, {metrics['elapsed_s']:.0f} s); final "
          f"(last 10% of batches): {final or 'nothing logged'}")
    print(f"bpl train: results in {out}/ (progress.csv, TensorBoard events, checkpoint.pt, "
          "learning_curve.png, metrics.json)")
    return 0


# ------------------------------------------------------------------ reproduce / compare
def _reproduce(args, name: str | None, parser: argparse.ArgumentParser) -> int:
    from agents.experiments import EXPERIMENTS, reproduce, resume_reproduction
    from agents.experiments.output import OutputExistsError

    resume_dir = getattr(args, "resume", None)
    if name is not None and name not in EXPERIMENTS:
        parser.error(f"unknown experiment {name!r}; choose one of {list(EXPERIMENTS)}")
    if resume_dir is not None:
        given = {"--quick": args.quick, "--seeds": args.seeds, "--config": args.config,
                 "--out": args.out, "--force": args.force, "--mnist-root": args.mnist_root}
        clashes = [flag for flag, value in given.items() if value not in (None, False)]
        if clashes:
            parser.error(f"--resume continues the reproduction as recorded in its "
                         f"reproduction.json; it cannot be combined with {clashes} (only "
                         "--updates, --workers, --report-only and --no-progress)")
        out = resume_dir

        def run() -> dict[str, Any]:
            return resume_reproduction(resume_dir, name=name, updates=args.updates,
                                       progress=not args.no_progress, workers=args.workers,
                                       report_only=args.report_only,
                                       checkpoint_seconds=args.checkpoint_seconds)
    else:
        if name is None:
            parser.error(f"give an EXPERIMENT (one of {list(EXPERIMENTS)}) or --resume DIR")
        if getattr(args, "report_only", False):
            parser.error("--report-only rewrites the results of a reproduction folder: give it "
                         "with --resume DIR")
        options = {"mnist_root": getattr(args, "mnist_root", None)}
        out = args.out or str(pathlib.Path("results") / (name + ("_quick" if args.quick
                                                                  else "")))

        def run() -> dict[str, Any]:
            return reproduce(name, out=out, quick=args.quick, seeds=args.seeds,
                             config=args.config, updates=args.updates, force=args.force,
                             progress=not args.no_progress, workers=args.workers,
                             checkpoint_seconds=getattr(args, "checkpoint_seconds", 60),
                             **options)
    try:
        result = run()
    except KeyboardInterrupt:
        if (pathlib.Path(out) / "cells").is_dir():
            print(f"\nbpl reproduce: interrupted. Finished cells and the checkpoints of the "
                  f"others are in {out}/cells/; continue with: bpl reproduce --resume {out}",
                  file=sys.stderr)
        else:
            print(f"\nbpl: interrupted before the results were written to {out}/",
                  file=sys.stderr)
        return 130
    except (*USER_ERRORS, OutputExistsError) as error:
        parser.error(str(error))
    print(result["table"])
    partial = " (partial)" if result.get("partial") else ""
    print(f"{result['command']}: {result['elapsed_s']:.0f} s; results{partial} in {out}/ "
          "(results.md, results.json, " + ", ".join(result["figures"]) + ")")
    return 0


# ------------------------------------------------------------------------------- report
def _report(args, parser: argparse.ArgumentParser) -> int:
    from agents.experiments.report import render_block, update_markdown

    if args.readme is None and not args.folders:
        parser.error("give results folders to print, or --readme FILE to rewrite its blocks")
    if args.check and args.readme is None:
        parser.error("--check compares the blocks of --readme FILE")
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
    from agents.experiments.output import OutputExistsError
    from agents.experiments.sweep import run_sweep

    out = args.out or str(pathlib.Path("sweeps") / pathlib.Path(args.config).stem)
    try:
        summary = run_sweep(args.config, out, backend=args.backend, workers=args.workers,
                            force=args.force, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"\nbpl sweep: interrupted; the runs that finished are in {out}/, without a "
              "summary", file=sys.stderr)
        return 130
    except (*USER_ERRORS, OutputExistsError, ImportError) as error:
        parser.error(str(error))
    print(summary["table"])
    print(f"bpl sweep: {len(summary['runs'])} runs in {summary['elapsed_s']:.0f} s; results in "
          f"{out}/ (summary.md, summary.json, one folder per run)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bpl`` console script; returns the exit status."""
    parser, sub, train_flags = _parser()
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
    return _sweep(args, sub["sweep"])


# ---------------------------------------------------------------------------- benchmark
def _benchmark(name: str, script_args: list[str], parser: argparse.ArgumentParser) -> int:
    """Run ``benchmarks/<script>`` of the checkout in a fresh interpreter; return its status."""
    import subprocess

    script = BENCHMARK_DIR / BENCHMARKS[name][0]
    if not script.is_file():
        parser.error(f"{script} not found: the benchmark scripts are not installed with the "
                     "package; run `bpl benchmark` from an editable install of a source "
                     "checkout (`make install`)")
    return subprocess.run([sys.executable, str(script), *script_args],
                          cwd=BENCHMARK_DIR.parent, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
