"""RecurrentPPO and BP(lambda) on the same copy-repeat stream: learning curves in one figure.

Copy-repeat is a memory task: the env shows N random bit vectors and a repeat count R, then the
learner must output the pattern R times. Each step's reward is minus the step's loss (binary
cross-entropy of the predicted logits), so the same stream is an RL problem too:

- RecurrentPPO (sb3-contrib, an LSTM policy) steps the env through SB3's VecEnv
  (bpl_envs.sb3.NativeVecEnv over the native vector env) and sees only the rewards. Its action
  is a Gaussian sample in SB3's nominal [-1, 1] box, scaled by --logit-scale into logits (a
  box of [-1, 1] logits could not score below 0.31 nats per bit).
- BP(lambda) (an LSTM core, synthetic gradients learned by TD(lambda)) steps the same vector env
  and learns from the loss gradient that the env's info carries (the supervised view), online:
  one update after every token (update="step"), nothing stored.

Both see --steps env transitions of the same task from the same seed. Every --eval-every steps,
each predicts (deterministically) a fixed set of held-out sequences and its loss in bits per
output bit is plotted against the env steps it has used; 1 bit is the loss of always
predicting 1/2.

    python examples/rl_memory_benchmark.py     # docs/rl_memory_benchmark.png, a few minutes
"""

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
from matplotlib.figure import Figure
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.vec_env import VecEnvWrapper

import bpl_envs  # noqa: F401  (registers the bpl/ ids)
from agents import BPLambda
from agents.evaluation import evaluate_sequences
from bpl_envs.losses import NATS_PER_BIT, get_loss
from bpl_envs.sb3 import make_native_vec_env

# ---------------------------------------------------------------------------------- arguments
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=60_000, help="env transitions per learner")
parser.add_argument("--eval-every", type=int, default=6_000, help="env transitions")
parser.add_argument("--num-envs", type=int, default=16, help="sequences stepped in parallel")
parser.add_argument("--pattern-length", type=int, default=2, help="N")
parser.add_argument("--repeats", type=int, default=2, help="R")
parser.add_argument("--bits", type=int, default=4, help="width of a pattern vector")
parser.add_argument("--hidden-size", type=int, default=16, help="LSTM units of both learners")
parser.add_argument(
    "--logit-scale",
    type=float,
    default=5.0,
    help="RecurrentPPO's logits are this times its [-1, 1] action",
)
parser.add_argument("--eval-sequences", type=int, default=256)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
parser.add_argument("--out", default="docs/rl_memory_benchmark.png")
args = parser.parse_args()

# ----------------------------------------------------------------------------------- set-up
torch.set_num_threads(args.threads)
ENV_ID = "bpl/CopyRepeat-v0"
env_kwargs = {"pattern_length": args.pattern_length, "repeats": args.repeats, "bits": args.bits}

# Held-out sequences from their own seed: tokens, targets and scored steps, by stepping an env.
held_out = gym.make_vec(ENV_ID, num_envs=args.eval_sequences, **env_kwargs)
observation, _ = held_out.reset(seed=10_000 + args.seed)
task = held_out.task
tokens, targets, scored, terminated = [], [], [], False
while not terminated:
    tokens.append(observation)
    zeros = np.zeros((args.eval_sequences, task.output_size), np.float32)
    observation, _, done, _, info = held_out.step(zeros)
    targets.append(info["target"])
    scored.append(info["scored"])
    terminated = done.all()
tokens, targets = np.stack(tokens, axis=1), np.stack(targets, axis=1)  # (N, T, n)
scored = np.stack(scored, axis=1)  # (N, T)


def loss_bits(learner) -> float:
    """Mean BCE of the learner's predictions on the held-out sequences, in bits per bit."""
    return evaluate_sequences(learner, tokens, targets, scored)["loss"] / NATS_PER_BIT


class ScaledLogits(VecEnvWrapper):
    """The policy's [-1, 1] actions, times ``scale``, are the logits the env scores."""

    def __init__(self, venv, scale: float):
        super().__init__(venv)
        self.scale = scale

    def reset(self):
        return self.venv.reset()

    def step_async(self, actions):
        self.venv.step_async(actions * self.scale)

    def step_wait(self):
        return self.venv.step_wait()


class PolicyPredictor:
    """RecurrentPPO's deterministic action, scaled, behind the predict(obs, state) that
    evaluate_sequences calls token by token."""

    def __init__(self, model, scale: float):
        self.model, self.scale = model, scale
        self.task, self.loss = task, get_loss(task.loss)

    def predict(self, observation, state):
        starts = np.full(len(observation), state is None)
        action, state = self.model.predict(
            observation, state=state, episode_start=starts, deterministic=True
        )
        return action * self.scale, state


# ---------------------------------------------------------------------------- the two learners
bp_lambda = BPLambda(
    gym.make_vec(ENV_ID, num_envs=args.num_envs, **env_kwargs),
    core="lstm",
    hidden_size=args.hidden_size,
    lam=1.0,
    gamma=0.9,
    sg_weight=0.1,
    lr_core=3e-3,
    lr_readout=3e-3,
    lr_synth=1e-3,
    update="step",
    seed=args.seed,
)
ppo_env = ScaledLogits(
    make_native_vec_env(ENV_ID, n_envs=args.num_envs, seed=args.seed, env_kwargs=env_kwargs),
    args.logit_scale,
)
ppo = RecurrentPPO(
    "MlpLstmPolicy",
    ppo_env,
    n_steps=64,
    batch_size=256,
    seed=args.seed,
    learning_rate=1e-3,
    policy_kwargs={"lstm_hidden_size": args.hidden_size},
    device="cpu",
)
runs = {
    "BP(λ=1), loss gradient, online": (bp_lambda, lambda: bp_lambda, "tab:blue"),
    "RecurrentPPO, reward = −loss": (
        ppo,
        lambda: PolicyPredictor(ppo, args.logit_scale),
        "tab:orange",
    ),
}

# --------------------------------------------------------------------------------- the loop
curves = {}
for label, (learner, predictor, _) in runs.items():
    steps, losses, start = [0], [loss_bits(predictor())], time.perf_counter()
    while learner.num_timesteps < args.steps:
        learner.learn(total_timesteps=args.eval_every, reset_num_timesteps=False)
        steps.append(learner.num_timesteps)
        losses.append(loss_bits(predictor()))
        print(f"{label:<30} {steps[-1]:>7} steps  held-out loss {losses[-1]:.3f} bits")
    curves[label] = (steps, losses, time.perf_counter() - start)

# --------------------------------------------------------------------------------- the plot
fig = Figure(figsize=(6.4, 4.0), layout="constrained")
ax = fig.subplots()
for label, (steps, losses, seconds) in curves.items():
    ax.plot(steps, losses, marker="o", color=runs[label][2], label=f"{label} ({seconds:.0f} s)")
ax.axhline(1.0, color="grey", ls="--", lw=1, label="predict 1/2 everywhere")
ax.set(
    xlabel="env steps (tokens)",
    ylabel="held-out loss (bits per output bit)",
    ylim=(0, None),
    title=f"copy-repeat N={args.pattern_length}, R={args.repeats}, {args.bits} bits; "
    f"LSTM H={args.hidden_size}, seed {args.seed}",
)
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
fig.savefig(args.out, dpi=120)
print(f"wrote {args.out}")
