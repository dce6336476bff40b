"""Determinism on CPU: the same seed gives bit-identical results in separate processes.

- Every registered learner, trained on a tiny budget in a fresh interpreter, ends with
  parameters whose bytes hash the same in another fresh interpreter (float32 and float64 for
  the recurrent learners, float64 for TD(lambda)); one subprocess trains them all.
- ``bpl reproduce`` gives a byte-identical results.json twice, wall times excluded (a shrunk
  toy preset twice in one process in the default run; the packaged ``--quick`` presets of
  random-walk and toy in two processes, marked slow).

What is not claimed: bit-identical results across machines, thread counts or torch builds, or
on a GPU (CUDA kernels may reduce in another order from run to run).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap

import pytest

from agents.cli import main
from agents.registry import LEARNERS

TRAIN_ALL = textwrap.dedent("""
    import hashlib, json
    import gymnasium as gym
    import numpy as np
    import torch
    import bpl_envs
    from agents.registry import LEARNERS
    from agents.sequence_learner import SequenceLearner

    def digest(learner):
        state = learner._get_state()
        tensors = []
        def collect(value):
            if isinstance(value, torch.Tensor):
                tensors.append(value.detach().cpu().contiguous())
            elif isinstance(value, dict):
                for key in sorted(value, key=str):
                    collect(value[key])
            elif isinstance(value, (list, tuple)):
                for item in value:
                    collect(item)
        collect(state)
        sha = hashlib.sha256()
        for tensor in tensors:
            sha.update(str(tensor.dtype).encode() + tensor.numpy().tobytes())
        return sha.hexdigest()

    hashes = {}
    for name, entry in sorted(LEARNERS.items()):
        if not issubclass(entry.cls, SequenceLearner):
            walk = gym.make("bpl/RandomWalk-v0", n_states=5)
            learner = entry.cls(walk, lam=0.8, alpha=0.1, seed=7)
            before = digest(learner)
            learner.learn(episodes=5)
            hashes[name] = (before, digest(learner))
            continue
        for dtype in ("float32", "float64"):
            env = gym.make_vec("bpl/LineDraw-v0", num_envs=2, sequence_length=4, cue_bits=3)
            kwargs = {"n": 2} if name in ("tbptt", "dni") else {}
            learner = entry.cls(env, hidden_size=3, dtype=dtype, n_envs=2, seed=7, **kwargs)
            before = digest(learner)
            learner.learn(episodes=3)
            hashes[f"{name} {dtype}"] = (before, digest(learner))
    print(json.dumps(hashes))
""")


def _run_in_parallel(commands: list[list[str]], timeout: float = 600) -> list[str]:
    """Run the commands as separate processes at the same time; return their stdout. Processes
    still running when one fails or times out are killed (none is left behind)."""
    processes = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in commands
    ]
    try:
        outputs = []
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            assert process.returncode == 0, err.decode()
            outputs.append(out.decode())
        return outputs
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_every_learner_ends_bit_identical_in_two_processes():
    first, second = (
        json.loads(out) for out in _run_in_parallel([[sys.executable, "-c", TRAIN_ALL]] * 2)
    )
    recurrent = [n for n in LEARNERS if n != "td_lambda"]
    expected = {f"{n} {d}" for n in recurrent for d in ("float32", "float64")} | {"td_lambda"}
    assert set(first) == expected
    assert first == second
    for run, (before, after) in first.items():
        assert before != after, f"{run}: the parameters did not change (nothing was learned)"


def _without_wall_times(results_json: bytes) -> list[bytes]:
    """The lines of a results.json, less the one wall-clock entry (``"elapsed_s": ...``)."""
    return [line for line in results_json.splitlines() if b'"elapsed_s": ' not in line]


SHRUNK_TOY = """
    env: bpl/LineDraw-v0
    env_kwargs: {sequence_length: 5}
    learner: bp_lambda
    num_envs: 2
    updates: 3
    seed: 0
    hyperparameters: {core: rnn, activation: identity, hidden_size: 4, lr_synth: 3.0e-4}
    experiment:
      lambdas: [0.0, 1.0]
      sequence_lengths: [5]
      cores:
        frozen: {lr_core: 0.0, lr_readout: 0.0}
        learning: {lr_core: 1.0e-3, lr_readout: 1.0e-3}
      eval_sequences: 2
      seeds: 2
"""


def _reproduce_twice(tmp_path: pathlib.Path, experiment: str, *options: str) -> list[bytes]:
    """results.json of two ``bpl reproduce`` processes run side by side (toy --quick alone
    takes about 21 min on 2 cores, so each may take an hour where they share them)."""
    outs = [tmp_path / f"run {i}" for i in (1, 2)]
    base = [sys.executable, "-m", "agents.cli", "reproduce", experiment, "--no-progress"]
    _run_in_parallel([[*base, *options, "--out", str(out)] for out in outs], timeout=3600)
    return [(out / "results.json").read_bytes() for out in outs]


def test_reproduce_gives_the_same_results_json_twice(tmp_path):
    """A shrunk toy preset (BP(lambda) learning, both core conditions, two seeds), twice in
    this process (the learners' bit-identity across processes is tested above; the --quick
    presets in two processes are the slow tests below)."""
    config = tmp_path / "toy.yaml"
    config.write_text(textwrap.dedent(SHRUNK_TOY))
    runs = []
    for out in (tmp_path / "run 1", tmp_path / "run 2"):
        argv = ["reproduce", "toy", "--config", str(config), "--workers", "1", "--out", str(out)]
        assert main([*argv, "--no-progress"]) == 0
        runs.append((out / "results.json").read_bytes())
    assert _without_wall_times(runs[0]) == _without_wall_times(runs[1])
    assert len(_without_wall_times(runs[0])) == len(runs[0].splitlines()) - 1


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["random-walk", "toy"])
def test_reproduce_quick_gives_the_same_results_json_twice(tmp_path, experiment):
    first, second = _reproduce_twice(tmp_path, experiment, "--quick")
    assert _without_wall_times(first) == _without_wall_times(second)
