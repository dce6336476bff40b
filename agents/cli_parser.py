"""The ``bpl`` command line's argument parser: sub-commands, options, help texts.

:mod:`agents.cli` runs the commands; this module only describes them.
"""

from __future__ import annotations

import argparse

from agents.experiments import EXPERIMENTS
from agents.experiments.parallel import BACKENDS, default_workers
from agents.experiments.sweep import SWEEP_HELP
from agents.experiments.tune import TUNE_HELP

__all__ = ["BENCHMARKS", "build_parser"]

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
  laptop CPU (copy-repeat: 150,000 updates per learner and seed). --quick (NAME_quick.yaml)
  finishes each experiment in a few minutes on 2 cores. --updates N sets every learner's
  budget.

resuming (toy, digits, seqmnist, copy-repeat):
  Every (learner, seed) trains in its own run folder under DIR/cells/ and checkpoints at batch
  boundaries (about once a minute). After Ctrl-C, a crash or a kill, `bpl reproduce --resume
  DIR` continues every unfinished cell from its checkpoint, exactly, and never reruns a
  finished one; `--resume DIR --updates N` extends every cell to N updates; `--resume DIR
  --report-only` rewrites the results from the finished cells without training. The results
  are also rewritten while cells finish, marked as partial until all have.

some learners, runs made elsewhere:
  --learners BPTT 'TBPTT(n=5)' trains only those learners of the preset (--resume keeps to
  them). --adopt RUNS copies in every `bpl train` run folder in RUNS whose configuration is a
  cell's (budget and logging aside; the folder names do not matter) and continues it: one
  finished at the budget is only evaluated, a shorter one resumes from its checkpoint. RUNS is
  only read; what was not adopted is named in a warning.

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
    "trace-update": (
        "trace_update.py",
        "BP(λ)'s trace update against one torch.bmm of the same multiply-adds",
    ),
    "memory": ("memory.py", "peak RSS against sequence length (T = 100, 1000, 10000)"),
    "sb3-vec-env": (
        "sb3_vec_env.py",
        "SB3 VecEnv over the native vector envs against DummyVecEnv (tokens/s)",
    ),
    "scaling": (
        "scaling.py",
        "tokens/s and memory of each learner against the hidden size (log-log figure)",
    ),
    "replay-window": (
        "replay_window.py",
        "BP(λ)'s windowed replay: increment error against the trace path, and learning",
    ),
}
"""``bpl benchmark NAME``: the script of the checkout's ``benchmarks/`` folder it runs."""


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


def build_parser(
    description: str,
) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser], set[str]]:
    """The ``bpl`` parser, its sub-command parsers by name, and the train options' dests
    (everything else on a ``bpl train`` line is a hyper-parameter)."""
    parser = argparse.ArgumentParser(
        prog="bpl",
        description=description,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub: dict[str, argparse.ArgumentParser] = {}

    def add(name: str, help_text: str, **kwargs) -> argparse.ArgumentParser:
        sub[name] = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            allow_abbrev=False,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            **kwargs,
        )
        return sub[name]

    listing = add("list", "list the registered envs, learners, experiments and presets")
    listing.add_argument(
        "--learner",
        metavar="NAME",
        help="also list this learner's hyper-parameters with their defaults",
    )

    train = add(
        "train",
        "train one learner on one env, with logs, checkpoints and a plot",
        epilog=TRAIN_EPILOG,
    )
    train_flags = {"-h", "--help"}

    def option(group, *flags: str, **kwargs) -> None:
        train_flags.update(flags)
        group.add_argument(*flags, **kwargs)

    train.add_argument("env", nargs="?", metavar="ENV_ID", help="env id, e.g. bpl/LineDraw-v0")
    option(
        train, "--learner", metavar="NAME", help="learner name from `bpl list` (default: bp_lambda)"
    )
    option(
        train,
        "--config",
        metavar="FILE",
        help="YAML run config or packaged preset name; flags override it",
    )
    option(
        train,
        "--num-envs",
        type=_positive_int,
        metavar="B",
        help="parallel sequences per batch (default 1)",
    )
    budget = train.add_mutually_exclusive_group()
    option(
        budget,
        "--steps",
        type=_positive_int,
        metavar="N",
        help="budget in env transitions (B per token)",
    )
    option(
        budget, "--updates", type=_positive_int, metavar="N", help="budget in batches of sequences"
    )
    option(train, "--seed", type=_non_negative_int, metavar="S", help="seed (default 0)")
    option(train, "--out", metavar="DIR", help="output folder (default runs/ENV_LEARNER_seedS)")
    option(
        train,
        "--save-every",
        type=_positive_int,
        metavar="N",
        help="also checkpoint every N steps (always at the end and on Ctrl-C)",
    )
    option(
        train,
        "--log-interval",
        type=_positive_int,
        metavar="N",
        help="print the metrics every N batches (default 10; CSV gets all)",
    )
    option(
        train,
        "--env-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="env keyword argument (YAML value), repeatable, e.g. --env-arg sequence_length=30",
    )
    option(
        train,
        "--resume",
        metavar="DIR",
        help="continue the run in DIR from its checkpoint (exactly, on CPU)",
    )
    option(
        train,
        "--threads",
        type=_positive_int,
        default=1,
        metavar="N",
        help="torch CPU threads (default 1: the models here are small, so more threads gain "
        "little, and they run several times slower when other processes share the cores; raise "
        "it for large models, e.g. BP(λ)'s trace path at H >= 100)",
    )
    option(train, "--force", action="store_true", help="replace the content of --out")
    option(train, "--no-progress", action="store_true", help="hide the progress bar")

    def add_experiment_options(command: argparse.ArgumentParser, name: str) -> None:
        command.add_argument(
            "--quick", action="store_true", help="small budgets: a few minutes on 2 cores"
        )
        command.add_argument(
            "--seeds",
            type=_positive_int,
            metavar="K",
            help="number of seeds (default: the preset's)",
        )
        command.add_argument(
            "--out",
            metavar="DIR",
            help=f"output folder (default results/{name}, or results/{name}_quick)",
        )
        command.add_argument(
            "--config", metavar="FILE", help="a YAML file to use instead of the packaged preset"
        )
        command.add_argument(
            "--updates",
            type=_positive_int,
            metavar="N",
            help="budget of every learner, in batches of sequences (default: the preset's)",
        )
        command.add_argument(
            "--workers",
            type=_positive_int,
            default=default_workers(),
            metavar="N",
            help=f"parallel processes (default: the CPU count, {default_workers()} here)",
        )
        command.add_argument("--force", action="store_true", help="replace the content of --out")
        command.add_argument("--no-progress", action="store_true", help="hide progress bars")

    reproduce = add(
        "reproduce", "reproduce one of the paper's experiments", epilog=REPRODUCE_EPILOG
    )
    reproduce.add_argument(
        "experiment",
        metavar="EXPERIMENT",
        nargs="?",
        help=f"one of {', '.join(EXPERIMENTS)} (optional with --resume)",
    )
    add_experiment_options(reproduce, "EXPERIMENT")
    reproduce.add_argument(
        "--mnist-root",
        metavar="DIR",
        help="seqmnist only: the full MNIST from the IDX files in DIR instead of the bundled "
        "5,000-image subset",
    )
    reproduce.add_argument(
        "--learners",
        nargs="+",
        metavar="LABEL",
        help="comparisons: train only these learners of the preset (its labels, e.g. BPTT "
        "'TBPTT(n=5)'; default: all)",
    )
    reproduce.add_argument(
        "--adopt",
        metavar="DIR",
        help="copy in the run folders in DIR (bpl train runs, any names) that are cells of this "
        "reproduction, and continue them instead of training them anew",
    )
    reproduce.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the reproduction in DIR (its unfinished cells, from their checkpoints)",
    )
    reproduce.add_argument(
        "--report-only",
        action="store_true",
        help="with --resume: rewrite the results from the finished cells, train nothing",
    )
    reproduce.add_argument(
        "--checkpoint-seconds",
        type=_non_negative_int,
        default=60,
        metavar="S",
        help="a cell writes a checkpoint at the first batch boundary S seconds after its last "
        "(default 60; 0: every batch)",
    )

    compare = add(
        "compare",
        "TD(λ) on the random walk next to BP(λ) on the toy task: the side-by-side figure",
        epilog=REPRODUCE_EPILOG,
    )
    add_experiment_options(compare, "compare")

    report = add(
        "report",
        "render README tables from results folders (results.json)",
        epilog=REPORT_EPILOG,
    )
    report.add_argument(
        "folders", nargs="*", metavar="DIR", help="results folders whose block to print"
    )
    report.add_argument(
        "--readme", metavar="FILE", help="rewrite every generated block of this markdown file"
    )
    report.add_argument(
        "--check",
        action="store_true",
        help="with --readme: change nothing, exit 1 when a block is stale",
    )

    sweep = add(
        "sweep",
        "run a grid of (env, learner, hyper-parameters, seeds) from a YAML file, in parallel",
        epilog=SWEEP_HELP,
    )
    sweep.add_argument("config", metavar="CONFIG", help="the grid's YAML file")
    sweep.add_argument(
        "--backend",
        choices=BACKENDS,
        default="local",
        help="local processes (default) or a Ray cluster (pip install 'bp-lambda[ray]')",
    )
    sweep.add_argument(
        "--workers",
        type=_positive_int,
        default=default_workers(),
        metavar="N",
        help=f"parallel processes, local backend (default {default_workers()})",
    )
    sweep.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="ray backend: the cluster's HOST:PORT, ray://HOST:PORT or auto "
        "(default: $RAY_ADDRESS, else a new local instance)",
    )
    sweep.add_argument("--out", metavar="DIR", help="output folder (default sweeps/CONFIG)")
    sweep.add_argument("--force", action="store_true", help="replace the content of --out")
    sweep.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    tune = add(
        "tune",
        "an Optuna search over a learner's hyper-parameters from a YAML file, pruned per batch, "
        "stored so that it resumes",
        epilog=TUNE_HELP,
    )
    tune.add_argument("config", metavar="CONFIG", help="the tune file (YAML) or a preset name")
    tune.add_argument(
        "--trials",
        type=_positive_int,
        required=True,
        metavar="N",
        help="finished trials the study should hold (a resumed study runs the missing ones)",
    )
    tune.add_argument(
        "--backend",
        choices=BACKENDS,
        default="local",
        help="worker processes (default) or Ray tasks (pip install 'bp-lambda[ray]'); the "
        "workers share OUT/study.db",
    )
    tune.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="K",
        help="trials run in parallel (default 1)",
    )
    tune.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="ray backend: the cluster's HOST:PORT, ray://HOST:PORT or auto "
        "(default: $RAY_ADDRESS, else a new local instance)",
    )
    tune.add_argument(
        "--out",
        metavar="DIR",
        help="output folder (default tunes/CONFIG); one holding this search resumes it",
    )
    tune.add_argument(
        "--force", action="store_true", help="start over: replace the content of --out"
    )
    tune.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    benchmark = add(
        "benchmark",
        "run one of the benchmark scripts of a source checkout "
        "(benchmarks/; see benchmarks/README.md)",
        epilog="benchmarks:\n"
        + "".join(f"  {name:<13} {description}\n" for name, (_, description) in BENCHMARKS.items()),
    )
    benchmark.add_argument(
        "name", choices=list(BENCHMARKS), metavar="NAME", help=f"one of {', '.join(BENCHMARKS)}"
    )
    benchmark.add_argument(
        "script_args",
        nargs=argparse.REMAINDER,
        metavar="...",
        help="passed to the script unchanged (`bpl benchmark NAME --help` shows its options)",
    )
    return parser, sub, train_flags
