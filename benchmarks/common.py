"""What the benchmark scripts share: the machine description, fresh-subprocess measurements, the
three learner configurations and the sequences they stream.

Each script runs every measurement whose peak memory matters in a fresh Python process (this
module's :func:`run_child`), so one configuration's allocations never inflate another's peak RSS.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from bpl_envs.replay import SequenceReplayVectorEnv

REPOSITORY = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Config:
    """A learner configuration: core, sizes and a task shaped like one of the paper's."""

    name: str
    core: str
    hidden_size: int
    batch_size: int
    sequence_length: int
    input_size: int
    output_size: int
    loss: str
    scored: str  # "all" or "last"
    description: str

    @property
    def state_size(self) -> int:
        return self.hidden_size * (2 if self.core == "lstm" else 1)


CONFIGS = {
    "a": Config(
        "a",
        "rnn",
        30,
        10,
        20,
        10,
        2,
        "mse",
        "last",
        "tanh RNN H=30, B=10, T=20 (the toy task's shape)",
    ),
    "b": Config(
        "b",
        "lstm",
        30,
        50,
        28,
        28,
        10,
        "ce",
        "last",
        "LSTM H=30, B=50, T=28 (sequential MNIST's shape)",
    ),
    "c": Config(
        "c",
        "lstm",
        100,
        100,
        20,
        10,
        9,
        "bce",
        "all",
        "LSTM H=100, B=100, T=20 (copy-repeat's shape)",
    ),
}


def replay_env(config: Config, sequence_length: int | None = None, seed: int = 0):
    """Random sequences of the configuration's shape, replayed batch after batch (2 batches)."""
    steps = sequence_length or config.sequence_length
    rng = np.random.default_rng(seed)
    n = 2 * config.batch_size
    inputs = rng.normal(size=(n, steps, config.input_size)).astype(np.float32)
    if config.loss == "ce":
        targets = np.eye(config.output_size, dtype=np.float32)[
            rng.integers(0, config.output_size, size=(n, steps))
        ]
    elif config.loss == "bce":
        targets = rng.integers(0, 2, size=(n, steps, config.output_size)).astype(np.float32)
    else:
        targets = rng.normal(size=(n, steps, config.output_size)).astype(np.float32)
    scored = np.ones(steps, bool) if config.scored == "all" else np.arange(steps) == steps - 1
    return SequenceReplayVectorEnv(inputs, targets, config.loss, scored, num_envs=config.batch_size)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, object]:
    """CPU model, cores, library versions, torch threads and the load average (the machine may
    be shared: a load above the core count means other processes competed for the cores)."""
    return {
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15min": [round(x, 2) for x in os.getloadavg()],
    }


def describe(info: dict[str, object]) -> str:
    return " | ".join(f"{key}={value}" for key, value in info.items())


def peak_rss_bytes() -> int:
    """This process's peak resident set size (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_child(script: Path, spec: dict, threads: int | None, timeout: float = 3600) -> dict:
    """Run ``script --child JSON`` in a fresh interpreter and return the JSON it prints last."""
    command = [sys.executable, str(script), "--child", json.dumps(spec)]
    if threads is not None:
        command += ["--threads", str(threads)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=REPOSITORY, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {spec} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_report(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {path}")


def config_dict(config: Config) -> dict:
    return asdict(config)
