"""Soak: a long stream through BP(lambda) updating after every token, watched for drift.

``make soak`` (or ``pytest -m soak -s``) streams 10**6 tokens (env transitions: B sub-envs per
step) of a ``stream=True`` task through BP(lambda) with ``update="step"`` and checks, in windows
of 5 % of the run:

- memory: the peak RSS after the first 10 % grows by at most 5 % by the end (a leak of a few
  bytes per token would show: 10**6 tokens);
- throughput: the median tokens/s of the last third of the windows is within 20 % of the median
  of the first third (after the first window, which pays for warm-up). Medians, because the
  machine may be shared: one slow window is another process, not drift;
- finiteness: every parameter is finite at every window's end (and the learner itself stops
  with an error naming the token if a learning quantity is not).

The figures are printed (tokens/s, RSS and throughput drift, the load average) so a run can be
quoted. ``BPL_SOAK_TOKENS`` shortens the stream (e.g. 50000 for a quick look).
"""

from __future__ import annotations

import os
import resource
import statistics
import time

import gymnasium as gym
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback

import bpl_envs  # noqa: F401  (registers the ids)
from agents.bp_lambda import SYNTH_UPDATES, BPLambda

TOKENS = int(os.environ.get("BPL_SOAK_TOKENS", 10**6))
WINDOWS = 20
NUM_ENVS = 64


def _peak_rss_mib() -> float:
    """The process's peak resident set size so far (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Windows(BaseCallback):
    """At every window's end: the time, the RSS (peak and current) and the finiteness of every
    parameter of the learner."""

    def __init__(self, window_tokens: int) -> None:
        super().__init__()
        self.window_tokens = window_tokens
        self.records: list[dict[str, float]] = []
        self._next = window_tokens

    def _on_training_start(self) -> None:
        self._start = time.perf_counter()

    def _on_step(self) -> bool:
        if self.model.num_timesteps >= self._next:
            self._next += self.window_tokens
            modules = self.model._modules().values()
            finite = all(bool(torch.isfinite(p).all()) for m in modules for p in m.parameters())
            assert finite, f"a parameter became non-finite by token {self.model.num_timesteps}"
            self.records.append(
                {
                    "tokens": self.model.num_timesteps,
                    "seconds": time.perf_counter() - self._start,
                    "peak_rss_mib": _peak_rss_mib(),
                    "rss_mib": _current_rss_mib(),
                }
            )
        return True


def _synth_update() -> dict[str, object]:
    """The replay path with a window where the library has it, else the trace path."""
    if "replay" in SYNTH_UPDATES:
        return {"synth_update": "replay", "replay_window": 10}
    return {"synth_update": "trace"}


@pytest.mark.slow
@pytest.mark.soak
def test_a_long_stream_neither_leaks_nor_slows_down_nor_diverges():
    torch.set_num_threads(1)
    env = gym.make_vec("bpl/CopyRepeat-v0", num_envs=NUM_ENVS, stream=True, bits=4)
    learner = BPLambda(
        env,
        core="lstm",
        hidden_size=8,
        lam=0.9,
        gamma=0.9,
        update="step",
        n_envs=NUM_ENVS,
        seed=0,
        **_synth_update(),
    )
    windows = Windows(TOKENS // WINDOWS)
    learner.learn(total_timesteps=TOKENS, callback=windows, log_interval=0)
    records = windows.records
    assert len(records) >= WINDOWS - 1

    tokens_per_s = [
        (b["tokens"] - a["tokens"]) / (b["seconds"] - a["seconds"])
        for a, b in zip(records, records[1:], strict=False)
    ]  # window 0 (warm-up) has no predecessor and is left out
    third = max(1, len(tokens_per_s) // 3)
    early, late = statistics.median(tokens_per_s[:third]), statistics.median(tokens_per_s[-third:])
    after_tenth = next(r for r in records if r["tokens"] >= TOKENS // 10)
    rss_drift = records[-1]["peak_rss_mib"] / after_tenth["peak_rss_mib"] - 1
    print(
        f"\nsoak: {learner.num_timesteps} tokens ({NUM_ENVS} streams, LSTM H=8, update='step', "
        f"{_synth_update()}), {records[-1]['seconds']:.0f} s; tokens/s early {early:.0f}, late "
        f"{late:.0f} (drift {late / early - 1:+.1%}); peak RSS {after_tenth['peak_rss_mib']:.1f}"
        f" MiB at 10 %, {records[-1]['peak_rss_mib']:.1f} MiB at the end (drift "
        f"{rss_drift:+.2%}); current RSS {records[-1]['rss_mib']:.1f} MiB; load average "
        f"{os.getloadavg()}"
    )
    assert rss_drift <= 0.05
    assert late >= 0.8 * early
