"""UORO (float64) against its published recursion with the same random signs (Jacobians and
one-step derivatives by autograd), unbiased (the mean over 100,000 independent draws is within
3 % of RTRL's gradient, 6 standard errors, where one draw is off by more than 30 %), and exact
where its rank-one estimate has no cross terms: the first token of a core with a scalar state."""

import numpy as np
import pytest
import torch

from agents.uoro import UORO
from tests.agents.autograd_reference import (
    assert_all_close,
    chunked_reference,
    learner_grads,
    make_data,
    randomise,
    replay_env,
    step_loss,
)
from tests.agents.influence_reference import step_derivatives

N_IN, N_OUT = 2, 3
EPSILON = 1e-7


def build(core, data, batch, hidden_size=3, loss="mse", **kwargs):
    env = replay_env(loss, *data, batch)
    learner = UORO(env, core=core, hidden_size=hidden_size, dtype="float64", seed=8, **kwargs)
    randomise(learner.readout, seed=81)
    return learner


def norms(tensors):
    return torch.stack([t.flatten(1).square().sum(1) for t in tensors]).sum(0).sqrt()


def uoro_reference(core, readout, kind, inputs, targets, scored, signs):
    """Tallec & Ollivier's recursion with the given signs ν_t (T, B, d):
    ρ0 = sqrt(‖θ̃‖/(‖J s̃‖ + ε)) + ε, ρ1 = sqrt(‖νᵀI‖/(‖ν‖ + ε)) + ε,
    s̃ ← ρ0 J s̃ + ρ1 ν, θ̃ ← θ̃/ρ0 + νᵀI/ρ1, grad += (l_t · s̃) θ̃. Returns the core grads."""
    x, y = torch.as_tensor(inputs), torch.as_tensor(targets)
    batch = x.shape[0]
    state = torch.zeros(batch, core.state_size, dtype=torch.float64)
    s_tilde = torch.zeros_like(state)
    theta_tilde = [torch.zeros(batch, *p.shape, dtype=torch.float64) for p in core.parameters()]
    grads = [torch.zeros_like(p) for p in core.parameters()]
    for t in range(x.shape[1]):
        jacobian, local = step_derivatives(core, x[:, t], state)
        nu = signs[t]
        nu_local = [torch.einsum("bd,bd...->b...", nu, i) for i in local]
        propagated = torch.einsum("bij,bj->bi", jacobian, s_tilde)
        rho0 = (norms(theta_tilde) / (propagated.norm(dim=1) + EPSILON)).sqrt() + EPSILON
        rho1 = (norms(nu_local) / (nu.norm(dim=1) + EPSILON)).sqrt() + EPSILON
        s_tilde = rho0[:, None] * propagated + rho1[:, None] * nu
        theta_tilde = [
            tt / rho0.view(-1, *[1] * (tt.dim() - 1)) + ni / rho1.view(-1, *[1] * (ni.dim() - 1))
            for tt, ni in zip(theta_tilde, nu_local, strict=True)
        ]
        state = core(x[:, t], state).detach().requires_grad_(True)
        loss = float(scored[t]) * step_loss(kind, readout(core.hidden(state)), y[:, t])
        (l_t,) = torch.autograd.grad(loss.mean(), [state])
        weights = (l_t * s_tilde).sum(1)
        grads = [
            g + torch.einsum("b,b...->...", weights, tt)
            for g, tt in zip(grads, theta_tilde, strict=True)
        ]
        state = state.detach()
    return grads


@pytest.mark.parametrize(
    "core, activation", [("rnn", "tanh"), ("rnn", "identity"), ("lstm", "tanh")]
)
def test_gradient_is_the_published_recursion_for_given_signs(core, activation):
    batch, steps = 3, 5
    data = make_data("ce", batch, steps, N_IN, N_OUT, seed=8)
    learner = build(core, data, batch, loss="ce", activation=activation)
    d = learner.core.state_size
    generator = torch.Generator().manual_seed(80)
    signs = torch.randint(0, 2, (steps, batch, d), generator=generator).double() * 2 - 1
    want = uoro_reference(learner.core, learner.readout, "ce", *data, signs)
    drawn = iter(signs)
    learner._random_signs = lambda _batch_size: next(drawn).clone()
    learner.learn(episodes=1)
    assert_all_close(learner_grads(learner)[0], want)
    assert all(g.abs().max() > 1e-4 for g in want)


def flat(tensors):
    return torch.cat([t.flatten() for t in tensors])


def test_mean_over_draws_is_rtrls_gradient():
    """100,000 independent draws (the same sequence 100,000 times in one batch: the batch-mean
    loss makes the learner's gradient the mean of the per-draw estimates). One draw's core
    gradient is off by about 1.6 × ‖g‖ in RMS (relative mean squared error 2.44, measured from
    2,000 per-draw estimates of this case), so the mean's standard error is about 0.005 ‖g‖; the
    tolerance is 0.03 ‖g‖ (6 standard errors), and a single draw must miss by more than 0.3 ‖g‖."""
    draws, steps = 100_000, 4
    inputs, targets, scored = make_data("mse", 1, steps, N_IN, N_OUT, seed=9)
    reference = build("rnn", (inputs, targets, scored), 1)
    want, _, _ = chunked_reference(
        reference.core, reference.readout, "mse", inputs, targets, scored
    )
    many = (np.repeat(inputs, draws, 0), np.repeat(targets, draws, 0), scored)
    mean = build("rnn", many, draws)
    mean.learn(episodes=1)
    single = build("rnn", (inputs, targets, scored), 1)
    single.learn(episodes=1)
    exact = flat(want)
    assert (flat(learner_grads(mean)[0]) - exact).norm() < 0.03 * exact.norm()
    assert (flat(learner_grads(single)[0]) - exact).norm() > 0.3 * exact.norm()


def test_exact_on_the_first_token_of_a_scalar_state():
    """With d = 1 and s̃, θ̃ starting at 0, s̃_0 θ̃_0ᵀ = ν² I_0 = I_0: RTRL's (and BPTT's)
    gradient for any signs."""
    batch = 6
    data = make_data("mse", batch, 1, N_IN, N_OUT, seed=10)
    learner = build("rnn", data, batch, hidden_size=1)
    want_core, want_readout, _ = chunked_reference(learner.core, learner.readout, "mse", *data)
    learner.learn(episodes=1)
    assert_all_close(learner_grads(learner)[0], want_core)
    assert_all_close(learner_grads(learner)[1], want_readout)


def test_signs_follow_the_seed():
    data = make_data("mse", 2, 4, N_IN, N_OUT, seed=11)
    first, again = build("rnn", data, 2), build("rnn", data, 2)
    other = UORO(replay_env("mse", *data, 2), hidden_size=3, dtype="float64", seed=9)
    with torch.no_grad():
        for a, b in zip(
            [*first.core.parameters(), *first.readout.parameters()],
            [*other.core.parameters(), *other.readout.parameters()],
            strict=True,
        ):
            b.copy_(a)
    for learner in (first, again, other):
        learner.learn(episodes=1)
    assert_all_close(learner_grads(first)[0], learner_grads(again)[0], rtol=0, atol=0)
    assert (
        max(
            (a - b).abs().max()
            for a, b in zip(learner_grads(first)[0], learner_grads(other)[0], strict=True)
        )
        > 1e-6
    )


@pytest.mark.parametrize(
    "epsilon, error",
    [(0.0, ValueError), (-1e-7, ValueError), (float("nan"), ValueError), ("small", TypeError)],
)
def test_epsilon_must_be_positive(epsilon, error):
    data = make_data("mse", 1, 2, N_IN, N_OUT)
    with pytest.raises(error, match=r"epsilon must be a finite number > 0, got"):
        build("rnn", data, 1, epsilon=epsilon)
