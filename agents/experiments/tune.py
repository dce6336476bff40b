"""``bpl tune``: an Optuna search over a learner's hyper-parameters, stored so that it resumes.

A tune file is a training run (as for ``bpl train --config``) plus the search::

    env: bpl/SequentialDigits-v0
    learner: bp_lambda
    num_envs: 50
    updates: 300
    seed: 0                        # every trial trains from this seed; it also seeds the sampler
    hyperparameters: {core: lstm}  # fixed
    search:                        # sampled (see agents.experiments.search_space)
      lam: {uniform: [0.0, 1.0]}
      lr_synth: {log_uniform: [1.0e-5, 1.0e-2]}
    metric: train/loss             # a metric the learner logs once per batch
    direction: minimize            # or maximize
    sampler: tpe                   # optional: tpe (default) or random, with options
    pruner: {median: {n_warmup_steps: 30}}   # optional: median (default), successive_halving, none

Each trial trains the run with the sampled hyper-parameters, in memory. After every batch it
reports the metric's mean over the last 10 % of the batches so far (what ``bpl train`` reports
as the final metric) to Optuna, whose pruner may stop it; the objective is that mean at the end.
Test metrics (envs with a test split) are recorded with each trial, not used by the search.

The output folder holds::

    OUT/tune.yaml                  the tune file, as given
    OUT/study.db                   the Optuna study (SQLite): every trial, its parameters,
                                   per-batch values and state
    OUT/results.md, results.json   every trial, best first
    OUT/optimization_history.png   Optuna's plots (matplotlib)
    OUT/param_importances.png      (from 2 completed trials on)

Running the same command again on the same folder resumes the study: the trials that finished
(completed, pruned, or diverged: the learner stopped on non-finite values) stay, a trial that was
interrupted (Ctrl-C, a killed process) runs again with its parameters, and new trials are drawn
until ``--trials`` have finished. Several workers (processes, or Ray tasks) share the study
through the SQLite file, so they must see the same filesystem; run one ``bpl tune`` per folder.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml
from stable_baselines3.common.callbacks import BaseCallback

from agents.experiments.building import build_learner, test_metrics
from agents.experiments.config import check_keys, load_config, read_yaml
from agents.experiments.output import OutputExistsError, prepare_output_dir, write_text
from agents.experiments.output_folder import record_output
from agents.experiments.parallel import BACKENDS, connect_ray, run_cells
from agents.experiments.run_config import RunConfig, learner_class
from agents.experiments.run_logs import final_metrics
from agents.experiments.search_space import (
    Range,
    build_pruner,
    build_sampler,
    parse_search_space,
    require_optuna,
)
from agents.experiments.training import train_in_memory
from agents.experiments.tune_results import write_results
from bpl_envs.checks import check_int

__all__ = ["TUNE_HELP", "TuneConfig", "run_tune", "tune_worker"]

STUDY_NAME = "bpl_tune"
STUDY_FILE = "study.db"
CONFIG_FILE = "tune.yaml"
RUN_KEYS = (
    "env",
    "learner",
    "env_kwargs",
    "hyperparameters",
    "num_envs",
    "steps",
    "updates",
    "seed",
)
SEARCH_KEYS = ("search", "metric", "direction", "sampler", "pruner")
DIRECTIONS = ("minimize", "maximize")
SQLITE_TIMEOUT_S = 60  # workers wait this long for the study file's lock

TUNE_HELP = """\
tune file (YAML): a training run plus the search, e.g. (agents/configs/tune_digits.yaml)
  env: bpl/SequentialDigits-v0
  learner: bp_lambda
  num_envs: 50
  updates: 300
  hyperparameters: {core: lstm, hidden_size: 16}     # fixed
  search:                                            # sampled
    lam: {uniform: [0.0, 1.0]}
    lr_synth: {log_uniform: [1.0e-5, 1.0e-2]}
    hidden_size: {int: [8, 32]}
    core: {categorical: [rnn, lstm]}
  metric: train/loss             # logged per batch; the objective is its mean over the
  direction: minimize            # last 10 % of batches; reported per batch to the pruner
  pruner: {median: {n_warmup_steps: 30}}   # median (default), successive_halving or none
  sampler: tpe                   # tpe (default) or random, e.g. {tpe: {n_startup_trials: 4}}

  The study is stored in OUT/study.db: run the same command again to resume it (finished
  trials are kept, an interrupted one runs again). --force starts over.
"""


@dataclass(frozen=True)
class TuneConfig:
    """A checked tune file: the base run, the ranges and how trials are compared and pruned."""

    run: RunConfig
    ranges: tuple[Range, ...]
    metric: str
    direction: str
    sampler: Any
    pruner: Any

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str) -> TuneConfig:
        """Check everything before any trial runs: keys, the run (as ``bpl train`` would), each
        range (a learner is built at every bound and choice), the metric, sampler and pruner.

        Raises:
            ValueError: naming the key at fault and what is allowed.
        """
        check_keys(where, data, RUN_KEYS + SEARCH_KEYS, required=("env", "learner", "search"))
        run = RunConfig.from_mapping(
            {k: v for k, v in data.items() if k in RUN_KEYS}, where=where
        ).resolved()
        ranges = parse_search_space(
            data["search"], learner_class(run.learner), run.hyperparameters, f"{where}: search"
        )
        for entry in ranges:
            for value in entry.values:
                try:
                    build_learner(run.derive(hyperparameters={entry.name: value}))
                except (TypeError, ValueError) as error:
                    raise ValueError(
                        f"{where}: search.{entry.name}: {value!r} is refused by the "
                        f"learner: {error}"
                    ) from None
        metric = data.get("metric", "train/loss")
        if not isinstance(metric, str) or not metric.startswith(("train/", "rollout/")):
            raise ValueError(
                f"{where}: metric must be a per-batch metric the learner logs "
                f"(train/... or rollout/..., e.g. train/loss), got {metric!r}"
            )
        direction = data.get("direction", "minimize")
        if direction not in DIRECTIONS:
            raise ValueError(
                f"{where}: direction must be one of {list(DIRECTIONS)}, got {direction!r}"
            )
        config = cls(run, tuple(ranges), metric, direction, data.get("sampler"), data.get("pruner"))
        build_sampler(config.sampler, seed=0)
        build_pruner(config.pruner)
        return config


# ----------------------------------------------------------------------------- one trial
class ReportPerBatch(BaseCallback):
    """Report the running objective to an Optuna trial after every batch; prune on request.

    The value reported after batch n is the mean of ``metric`` over the last 10 % of batches
    1..n (:func:`agents.experiments.training.final_metrics`), so the last report is the
    objective.

    Attributes:
        values: the metric of every batch so far.
    """

    def __init__(self, trial, metric: str) -> None:
        super().__init__()
        self.trial, self.metric = trial, metric
        self.values: list[float] = []

    def _on_step(self) -> bool:
        return True

    @property
    def objective(self) -> float:
        return final_metrics({self.metric: np.asarray(self.values)})[self.metric]

    def _on_rollout_end(self) -> None:
        logged = self.model.logger.name_to_value
        if self.metric not in logged:
            raise ValueError(
                f"metric {self.metric!r} was not logged by {type(self.model).__name__}"
                f"; it logs {sorted(logged)}"
            )
        self.values.append(float(logged[self.metric]))
        self.trial.report(self.objective, step=len(self.values))
        if self.trial.should_prune():
            optuna = require_optuna()
            raise optuna.TrialPruned(f"pruned after {len(self.values)} batches")


def _objective(config: TuneConfig):
    def objective(trial) -> float:
        params = {entry.name: entry.suggest(trial) for entry in config.ranges}
        run = config.run.derive(hyperparameters=params)
        report = ReportPerBatch(trial, config.metric)
        try:
            learner, _ = train_in_memory(run, callbacks=[report])
        except FloatingPointError as error:
            trial.set_user_attr("diverged", str(error))
            raise
        for key, value in test_metrics(learner, run).items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("batches", len(report.values))
        return report.objective

    return objective


# ------------------------------------------------------------------------------- the study
def _storage(out: pathlib.Path):
    optuna = require_optuna()
    return optuna.storages.RDBStorage(
        f"sqlite:///{(out / STUDY_FILE).resolve()}",
        engine_kwargs={"connect_args": {"timeout": SQLITE_TIMEOUT_S}},
    )


def _open_study(out: pathlib.Path, config: TuneConfig, sampler_seed: int = 0):
    optuna = require_optuna()
    return optuna.create_study(
        study_name=STUDY_NAME,
        storage=_storage(out),
        direction=config.direction,
        sampler=build_sampler(config.sampler, seed=sampler_seed),
        pruner=build_pruner(config.pruner),
        load_if_exists=True,
    )


def _finished(trial) -> bool:
    """Completed, pruned, or stopped by the learner on non-finite values (a result too)."""
    state = trial.state.name
    return state in ("COMPLETE", "PRUNED") or (state == "FAIL" and "diverged" in trial.user_attrs)


def _requeue_interrupted(study) -> None:
    """Fail the trials left running by a killed search and queue every interrupted trial's
    parameters again (once)."""
    optuna = require_optuna()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for trial in trials:
        if trial.state.name == "FAIL" and not _finished(trial) and trial.number not in retried:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


def tune_worker(out: str, trials: int, worker: int, progress: bool = False) -> int:
    """Run ``trials`` trials of the study in ``out`` (in a worker process or a Ray task).

    The sampler is seeded from the tune file's seed, the number of trials already in the study
    and ``worker``, so parallel workers and resumed searches do not draw the same points.

    Returns:
        The number of trials this worker ran.
    """
    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = pathlib.Path(out)
    config = TuneConfig.from_mapping(load_config(folder / CONFIG_FILE), str(folder / CONFIG_FILE))
    existing = len(_open_study(folder, config).get_trials(deepcopy=False))
    seed = int(np.random.SeedSequence([config.run.seed, existing, worker]).generate_state(1)[0])
    study = _open_study(folder, config, sampler_seed=seed)
    study.optimize(
        _objective(config), n_trials=trials, catch=(FloatingPointError,), show_progress_bar=progress
    )
    return trials


def _prepare_folder(out: pathlib.Path, data: Mapping[str, Any], force: bool) -> None:
    """Create ``out`` for a new search, or check that it holds this search (to resume it)."""
    saved = out / CONFIG_FILE
    if not force and (out / STUDY_FILE).is_file() and saved.is_file():
        if read_yaml(saved.read_text()) != dict(data):
            raise OutputExistsError(
                f"{out} holds a search of a different tune file ({saved}); resuming needs the "
                "same file: pass --force to start over or choose another --out"
            )
        return
    prepare_output_dir(out, force)
    for name in (STUDY_FILE, STUDY_FILE + "-journal"):  # SQLite writes them: --force removes them
        record_output(out / name)
    write_text(saved, yaml.safe_dump(dict(data), sort_keys=False))


def _shares(remaining: int, workers: int) -> list[int]:
    """``remaining`` trials split as evenly as possible over at most ``workers`` workers."""
    count = min(workers, remaining)
    return [remaining // count + (i < remaining % count) for i in range(count)] if count else []


def run_tune(
    config_file: str,
    out: str | pathlib.Path,
    *,
    trials: int,
    backend: str = "local",
    workers: int = 1,
    force: bool = False,
    progress: bool = True,
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Search until ``trials`` trials of the study in ``out`` have finished; write the results.

    Args:
        config_file: a tune file or packaged preset name (see :data:`TUNE_HELP`).
        out: the output folder; one that holds this search's study is resumed.
        trials: how many finished trials the study should hold (an int >= 1).
        backend: ``"local"`` (worker processes) or ``"ray"`` (Ray tasks on the cluster of
            :func:`agents.experiments.parallel.connect_ray`).
        workers: trials run in parallel.
        force: start over in a folder that holds results.
        progress: Optuna's progress bar (with one worker).
        ray_address: the Ray cluster (ray backend).

    Returns:
        What ``results.json`` holds. The results are also written when the search is
        interrupted (then with the trials finished so far), before KeyboardInterrupt goes on.

    Raises:
        ValueError / TypeError: a malformed tune file, naming the key at fault.
        OutputExistsError: ``out`` holds other results (or another search) and not ``force``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if ray_address is not None and backend != "ray":
        raise ValueError(f"ray_address is for backend='ray', got backend={backend!r}")
    trials = check_int("trials", trials, minimum=1)
    workers = check_int("workers", workers, minimum=1)
    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = load_config(config_file)
    config = TuneConfig.from_mapping(data, str(config_file))
    if backend == "ray":
        connect_ray(ray_address)  # before anything is written
    out = pathlib.Path(out)
    _prepare_folder(out, data, force)
    study = _open_study(out, config)
    _requeue_interrupted(study)
    remaining = trials - sum(_finished(t) for t in study.get_trials(deepcopy=False))
    shares = _shares(max(0, remaining), workers)
    cells = [
        {"out": str(out), "trials": n, "worker": i, "progress": progress and len(shares) == 1}
        for i, n in enumerate(shares)
    ]
    try:
        run_cells(
            tune_worker, cells, workers=len(cells) or 1, backend=backend, ray_address=ray_address
        )
    finally:
        results = write_results(
            out,
            _open_study(out, config),
            metric=config.metric,
            direction=config.direction,
            parameters=[entry.name for entry in config.ranges],
            title=f"Tune {config.run.learner} on {config.run.env}",
        )
    return results
