"""Your own recurrent learner, written against the extension contract (docs/extending.md),
registered, listed and trained by the `bpl` command line.

The rule: random feedback with leaky eligibility traces, in the spirit of RFLO (Murray 2019,
"Local online learning in recurrent networks with random feedback"). For an RNN core
s_t = tanh(W_ih x_t + W_hh s_{t-1} + b), per sequence and token t:

    e_t = decay · e_{t-1} + (∂s_t/∂θ)_local      one number per parameter: its unit's entry
    grad θ[i, ...] += (F δ_t)_i e_t[i, ...]      δ_t = dL_t/dŷ_t, F a fixed random (H, n_out)

The feedback F replaces the readout weights that carry the error back in exact gradients, and
the trace decay is a hyper-parameter (in RFLO it is the units' leak 1 − 1/τ; these units do not
leak). The readout learns from its exact gradient.

    python examples/random_feedback_learner.py                # bpl list, then 300 updates
    python examples/random_feedback_learner.py --updates 20   # a quick look
"""

import argparse
from typing import Any

import torch

from agents import SequenceLearner, register_learner
from agents.cli import main as bpl
from agents.local_derivatives import per_sequence_local_vjp
from agents.sequence_learner import grad_of
from bpl_envs.checks import check_fraction


class RandomFeedback(SequenceLearner):
    """Random feedback with leaky eligibility traces (RFLO-like), for the RNN core.

    Args:
        env: as :class:`~agents.sequence_learner.SequenceLearner`.
        trace_decay: decay in [0, 1] of the eligibility traces (0: one-step derivatives only).
        **kwargs: the other arguments of :class:`~agents.sequence_learner.SequenceLearner`.
    """

    def __init__(self, env, *, trace_decay: float = 0.5, **kwargs: Any) -> None:
        self.trace_decay = check_fraction("trace_decay", trace_decay)
        super().__init__(env, **kwargs)
        if self.core_kind != "rnn":
            raise ValueError(f"RandomFeedback needs core='rnn', got core={self.core_kind!r}")

    def _build_extra_modules(self) -> None:
        # Seeded with the core and readout; saved in checkpoints and moved to the device with
        # them (it is in _modules), never learned (it has no learning rate).
        self.feedback = torch.nn.Linear(self.task.output_size, self.hidden_size, bias=False)
        self.feedback.requires_grad_(False)

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {**super()._modules(), "feedback": self.feedback}

    def _begin_sequences(self, batch_size: int) -> None:
        super()._begin_sequences(batch_size)  # zero state; zeroed gradients (update="sequence")
        self._traces = [
            torch.zeros(batch_size, *p.shape, dtype=self.dtype, device=self.device)
            for p in self.core.parameters()
        ]  # e: (B, *θ.shape) per parameter

    @torch.no_grad()
    def _learn_step(self, loss_grad: torch.Tensor | None, final: bool) -> None:  # noqa: ARG002 (hook)
        if self.update == "step":
            self._zero_grads()
        self._immediate_gradient(loss_grad)  # the readout's exact gradient
        self._watch(loss_grad)
        if self.lr_core > 0:
            batch = self._state.shape[0]
            ones = torch.ones(batch, 1, self.hidden_size, dtype=self.dtype, device=self.device)
            local = per_sequence_local_vjp(self.core, self._cache, ones)  # unit i's row: ∂s_i/∂θ
            # F δ_t: (B, H); None where no sequence has a loss at this token (the traces still run)
            signal = None if loss_grad is None else self.feedback(loss_grad)
            for parameter, trace, new in zip(
                self.core.parameters(), self._traces, local, strict=True
            ):
                trace.mul_(self.trace_decay).add_(new[:, 0])
                if signal is not None:
                    grad_of(parameter).add_(torch.einsum("bi,bi...->i...", signal, trace))
        if self.update == "step":
            self._check_finite()
            self._optimizer_step()

    def _hyperparameters(self) -> dict[str, Any]:
        return {**super()._hyperparameters(), "trace_decay": self.trace_decay}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=300, help="batches of 50 sequences")
    parser.add_argument("--out", default="runs/random_feedback", help="the run's folder")
    args = parser.parse_args()

    register_learner(
        "random_feedback",
        RandomFeedback,
        "random feedback with leaky eligibility traces (RFLO-like, RNN core)",
    )
    bpl(["list", "--learner", "random_feedback"])
    status = bpl(
        [
            "train",
            "bpl/SequentialDigits-v0",
            "--learner",
            "random_feedback",
            "--num-envs",
            "50",
            "--updates",
            str(args.updates),
            "--hidden-size",
            "32",
            "--lr-core",
            "3e-3",
            "--lr-readout",
            "3e-3",
            "--trace-decay",
            "0.5",
            "--out",
            args.out,
            "--force",
            "--no-progress",
            "--log-interval",
            "100",
        ]
    )
    raise SystemExit(status)
