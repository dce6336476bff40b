"""agents/traces.py against independent computations (explicit loops, definitions, autograd, SB3).

All numerical identities are checked in float64.
"""

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer

import agents.trace_decay as trace_decay
import agents.traces as traces
from agents.traces import (
    accumulating_trace,
    decay_trace_,
    dutch_trace,
    lambda_returns,
    replacing_trace,
    td_error,
    trace_increment,
    true_online_td_update,
)
from bpl_envs.random_walk import RandomWalkEnv

F64 = torch.float64


def _rng(seed):
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=_rng(seed), dtype=F64)


def _episode(n_states, seed):
    """States s_0..s_T (s_T terminal) and rewards r_1..r_T of one random-walk episode."""
    env = RandomWalkEnv(n_states=n_states)
    state, _ = env.reset(seed=seed)
    states, rewards, terminated = [int(state)], [], False
    while not terminated:
        state, reward, terminated, _, _ = env.step(0)
        states.append(int(state))
        rewards.append(reward)
    return states, rewards


# --------------------------------------------------------------------------- scalar form


def test_td_error_scalar_form_matches_the_formula_elementwise():
    r, v_t, v_tm1, discount = (_randn(6, seed=s) for s in range(4))
    got = td_error(r, v_t, v_tm1, discount)
    for b in range(6):
        expected = r[b].item() + discount[b].item() * v_t[b].item() - v_tm1[b].item()
        assert got[b].item() == pytest.approx(expected, abs=1e-15)
    np.testing.assert_allclose(td_error(r, v_t, v_tm1, 0.5), r + 0.5 * v_t - v_tm1, atol=1e-15)


def test_replacing_and_dutch_traces_match_explicit_loops():
    batch, n = 4, 7
    e = _randn(batch, n, seed=1)
    x = (torch.rand(batch, n, generator=_rng(2), dtype=F64) < 0.4).to(F64)
    discount = torch.tensor([0.0, 0.3, 0.9, 1.0], dtype=F64)
    alpha = torch.tensor([0.1, 0.5, 0.2, 0.05], dtype=F64)
    replacing, dutch = replacing_trace(e, x, discount), dutch_trace(e, x, discount, alpha)
    for b in range(batch):
        expected_replacing = [1.0 if x[b, i] == 1 else discount[b] * e[b, i] for i in range(n)]
        np.testing.assert_allclose(replacing[b], expected_replacing, atol=1e-15)
        overlap = sum(e[b, i] * x[b, i] for i in range(n))
        expected_dutch = [
            discount[b] * e[b, i] + (1 - alpha[b] * discount[b] * overlap) * x[b, i]
            for i in range(n)
        ]
        np.testing.assert_allclose(dutch[b], expected_dutch, atol=1e-15)


def test_offline_accumulate_td_lambda_equals_offline_lambda_return_update():
    """Fixed weights over an episode: α Σ_t δ_t z_t == α Σ_t (G^λ_t − V(S_t)) x(S_t), with G^λ_t
    the book's definition (1−λ) Σ_n λ^(n−1) G_{t:t+n} + λ^(T−t−1) G_t (eq. 12.3)."""
    n_states, n_features, alpha = 7, 5, 0.1
    features = _randn(n_states + 2, n_features, seed=3)
    features[0] = features[-1] = 0.0  # terminal states have value 0
    w = _randn(1, n_features, seed=4)
    for seed, lam, gamma in [(0, 0.0, 1.0), (1, 0.5, 0.9), (2, 0.8, 1.0), (3, 1.0, 0.95)]:
        states, rewards = _episode(n_states, seed)
        horizon = len(rewards)
        value = [float(features[s] @ w[0]) for s in states]

        def n_step_return(t, n, gamma=gamma, rewards=rewards, value=value, horizon=horizon):
            end = min(t + n, horizon)
            g = sum(gamma ** (k - t) * rewards[k] for k in range(t, end))
            return g + (gamma ** (end - t) * value[end] if end < horizon else 0.0)

        forward = torch.zeros(n_features, dtype=F64)
        for t in range(horizon):
            g_lambda = sum(
                (1 - lam) * lam ** (n - 1) * n_step_return(t, n) for n in range(1, horizon - t)
            ) + lam ** (horizon - t - 1) * n_step_return(t, horizon - t)
            forward += alpha * (g_lambda - value[t]) * features[states[t]]

        backward = torch.zeros(1, n_features, dtype=F64)
        z = torch.zeros(1, n_features, dtype=F64)
        for t in range(horizon):
            x_t = features[states[t]].unsqueeze(0)
            z = accumulating_trace(z, x_t, gamma * lam)
            terminal = t + 1 == horizon
            delta = td_error(
                torch.tensor([rewards[t]], dtype=F64),
                features[states[t + 1]].view(1, -1) @ w[0],
                x_t @ w[0],
                0.0 if terminal else gamma,
            )
            backward += alpha * trace_increment(delta, z)
        np.testing.assert_allclose(backward[0], forward, rtol=1e-12, atol=1e-14)


def test_lambda_returns_equal_the_n_step_mixture_definition_scalar_and_operator():
    """G_i = Σ_{n<N} (1−λ)λ^(n−1) G_i^(n) + λ^(N−1) G_i^(N), N = T − i, with n-step targets
    G_i^(1) = (r_i + d_i v_i) M_i and G_i^(n) = (r_i + d_i G_{i+1}^(n−1)) M_i, computed per batch
    element from this definition."""
    horizon, batch, d = 6, 3, 2
    r, v = _randn(horizon, batch, d, seed=5), _randn(horizon, batch, d, seed=6)
    discount = torch.rand(horizon, batch, generator=_rng(7), dtype=F64)
    discount[2, 1] = 0.0  # an episode end inside the trajectory
    matrices = _randn(horizon, batch, d, d, seed=8)

    def n_step(i, n, b, operator):
        m = matrices[i, b] if operator else torch.eye(d, dtype=F64)
        tail = v[i, b] if n == 1 or i == horizon - 1 else n_step(i + 1, n - 1, b, operator)
        return (r[i, b] + discount[i, b] * tail) @ m

    for lam in (0.0, 0.4, 1.0):
        for operator in (False, True):
            got = lambda_returns(r, discount, v, lam, matrices if operator else None)
            for i in range(horizon):
                last = horizon - i
                for b in range(batch):
                    expected = sum(
                        (1 - lam) * lam ** (n - 1) * n_step(i, n, b, operator)
                        for n in range(1, last)
                    ) + lam ** (last - 1) * n_step(i, last, b, operator)
                    np.testing.assert_allclose(got[i, b], expected, rtol=1e-12, atol=1e-13)


def test_lambda_returns_per_step_lambda_follows_the_recursion():
    horizon, batch = 5, 2
    r, v = _randn(horizon, batch, seed=9), _randn(horizon, batch, seed=10)
    discount = torch.full((horizon,), 0.9, dtype=F64)
    lam = torch.rand(horizon, batch, generator=_rng(11), dtype=F64)
    got = lambda_returns(r, discount, v, lam)
    g = v[-1].clone()
    for t in reversed(range(horizon)):
        g = r[t] + 0.9 * ((1 - lam[t]) * v[t] + lam[t] * g)
        np.testing.assert_allclose(got[t], g, rtol=1e-14)
    constant = lambda_returns(r, 0.9, v, torch.full((horizon, batch), 0.3, dtype=F64))
    np.testing.assert_allclose(constant, lambda_returns(r, 0.9, v, 0.3), rtol=1e-15)


@pytest.mark.parametrize("gamma, lam", [(0.99, 0.95), (1.0, 1.0), (0.9, 0.0), (0.8, 0.5)])
def test_lambda_returns_match_stable_baselines3_rollout_buffer(gamma, lam):
    """SB3: returns = GAE(λ) advantages + values. Our inputs: r_t = rewards[t], v_t = the
    value of the next state (values[t+1], last_values at the end), discount_t = γ(1 −
    episode_starts[t+1]) (1 − dones at the end)."""
    horizon, n_envs = 20, 3
    generator = np.random.default_rng(12)
    rewards = generator.normal(size=(horizon, n_envs)).astype(np.float32)
    values = generator.normal(size=(horizon, n_envs)).astype(np.float32)
    starts = generator.random((horizon, n_envs)) < 0.2
    starts[0] = True
    last_values = generator.normal(size=n_envs).astype(np.float32)
    dones = np.array([True, False, False])

    buffer = RolloutBuffer(
        horizon,
        spaces.Discrete(2),
        spaces.Discrete(2),
        device="cpu",
        gae_lambda=lam,
        gamma=gamma,
        n_envs=n_envs,
    )
    for t in range(horizon):
        buffer.add(
            np.zeros(n_envs, dtype=np.int64),
            np.zeros(n_envs, dtype=np.int64),
            rewards[t],
            starts[t],
            torch.as_tensor(values[t]),
            torch.zeros(n_envs),
        )
    buffer.compute_returns_and_advantage(torch.as_tensor(last_values), dones)

    next_values = np.concatenate([values[1:], last_values[None]]).astype(np.float64)
    next_non_terminal = np.concatenate([1.0 - starts[1:], 1.0 - dones[None]])
    ours = lambda_returns(
        torch.as_tensor(rewards, dtype=F64),
        torch.as_tensor(gamma * next_non_terminal),
        torch.as_tensor(next_values),
        lam,
    )
    np.testing.assert_allclose(ours.numpy(), buffer.returns, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- operator form


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_operator_lambda_returns_at_lambda_1_equal_the_bptt_future_gradient(gamma):
    """tanh RNN h_t = tanh(W h_{t−1} + U x_t), loss L_t = ½|A h_t − y_t|² at every step:
    G_t = (l_{t+1} + γ G_{t+1}) J_{t+1} must equal ∂(Σ_{τ>t} γ^(τ−t−1) L_τ)/∂h_t (autograd)."""
    horizon, batch, hidden, n_in, n_out = 6, 3, 4, 2, 3
    w_hh, w_xh = 0.6 * _randn(hidden, hidden, seed=13), _randn(hidden, n_in, seed=14)
    readout = _randn(n_out, hidden, seed=15)
    inputs, targets = _randn(horizon, batch, n_in, seed=16), _randn(horizon, batch, n_out, seed=17)
    h = [_randn(batch, hidden, seed=18).requires_grad_()]
    for t in range(horizon):
        h.append(torch.tanh(h[-1] @ w_hh.T + inputs[t] @ w_xh.T))
    losses = [0.5 * ((h[t + 1] @ readout.T - targets[t]) ** 2).sum() for t in range(horizon)]

    l_next = torch.stack([(h[t + 1] @ readout.T - targets[t]) @ readout for t in range(horizon)])
    jacobians = torch.stack(
        [(1 - h[t + 1] ** 2).unsqueeze(2) * w_hh for t in range(horizon)]
    ).detach()  # J_{t+1}[b] = diag(1 − h_{t+1}²) W_hh
    discount = torch.full((horizon,), gamma, dtype=F64)
    discount[-1] = 0.0
    got = lambda_returns(
        l_next.detach(), discount, _randn(horizon, batch, hidden, seed=19), 1.0, jacobians
    )
    for t in range(horizon):
        future = sum(gamma ** (tau - t) * losses[tau] for tau in range(t, horizon))
        (expected,) = torch.autograd.grad(future, h[t], retain_graph=True)
        np.testing.assert_allclose(got[t], expected, rtol=1e-12, atol=1e-14)


def _left_loop(matrices, e):
    """Per batch element: M[b] @ e[b] over axis 1 (the reference for the operator form)."""
    out = torch.empty_like(e)
    for b in range(e.shape[0]):
        out[b] = (matrices[b] @ e[b].reshape(e.shape[1], -1)).reshape(e.shape[1:])
    return out


def _operators(matrices):
    """The same M as a tensor and as callables (row action for δ, left action for traces)."""
    return {
        "tensor": (matrices, matrices),
        "callable": (
            lambda u: torch.einsum("bi,bik->bk", u, matrices),
            lambda e: torch.einsum("bij,bj...->bi...", matrices, e),
        ),
    }


@pytest.mark.parametrize("kind", ["tensor", "callable"])
def test_operator_form_matches_an_explicit_per_batch_loop(kind):
    batch, d, param_shape = 3, 4, (2, 5)
    matrices = _randn(batch, d, d, seed=20)
    row_op, left_op = _operators(matrices)[kind]
    discount = torch.tensor([0.0, 0.5, 0.97], dtype=F64)
    r, v_t, v_tm1 = (_randn(batch, d, seed=s) for s in (21, 22, 23))
    delta = td_error(r, v_t, v_tm1, discount, row_op)
    for b in range(batch):
        expected = (r[b] + discount[b] * v_t[b]) @ matrices[b] - v_tm1[b]
        np.testing.assert_allclose(delta[b], expected, rtol=1e-13, atol=1e-14)

    e, grad = _randn(batch, d, *param_shape, seed=24), _randn(batch, d, *param_shape, seed=25)
    expected_e = discount.view(-1, 1, 1, 1) * _left_loop(matrices, e) + grad
    np.testing.assert_allclose(
        accumulating_trace(e, grad, discount, left_op), expected_e, rtol=1e-13, atol=1e-14
    )

    decayed = e.clone()
    assert decay_trace_(decayed, discount, left_op) is decayed
    np.testing.assert_allclose(decayed, expected_e - grad, rtol=1e-13, atol=1e-14)

    increment = trace_increment(delta, e)
    for b in range(batch):
        expected = sum(delta[b, k] * e[b, k] for k in range(d))
        np.testing.assert_allclose(increment[b], expected, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("scratch_elements", [None, 1, 2, 3, 100])
def test_decay_trace_in_place_with_tensor_transition_for_any_block_size(
    scratch_elements, monkeypatch
):
    """Blocks of 1, 2 (uneven: 5 = 2 + 2 + 1), 3 or all batch elements give the same result."""
    batch, d, param_shape = 5, 3, (2, 5)
    matrices, e = _randn(batch, d, d, seed=26), _randn(batch, d, *param_shape, seed=27)
    discount = torch.tensor([0.7, 0.0, 1.0, 0.3, 0.9], dtype=F64)
    expected = discount.view(-1, 1, 1, 1) * _left_loop(matrices, e)
    pointer = e.data_ptr()
    per_element = d * 2 * 5
    monkeypatch.setattr(trace_decay, "DECAY_SCRATCH_NUMEL", 2 * per_element)  # default: 2 per block
    scratch = (
        None
        if scratch_elements is None
        else torch.empty(scratch_elements * per_element + 1, dtype=F64)
    )
    out = decay_trace_(e, discount, matrices, scratch=scratch)
    assert out is e and e.data_ptr() == pointer
    np.testing.assert_allclose(e, expected, rtol=1e-13, atol=1e-14)


def test_decay_trace_without_transition_is_one_in_place_multiply():
    e = _randn(3, 2, 4, seed=28)
    expected, pointer = e * torch.tensor([0.1, 0.0, 1.0], dtype=F64).view(3, 1, 1), e.data_ptr()
    assert decay_trace_(e, torch.tensor([0.1, 0.0, 1.0], dtype=F64)) is e
    assert e.data_ptr() == pointer
    np.testing.assert_array_equal(e, expected)


def test_operator_form_with_identity_and_d_1_reduces_to_the_scalar_form():
    batch, param_shape = 4, (3, 2)
    discount = torch.tensor([0.2, 0.0, 1.0, 0.6], dtype=F64)
    r, v_t, v_tm1 = (_randn(batch, seed=s) for s in (29, 30, 31))
    e, grad = _randn(batch, *param_shape, seed=32), _randn(batch, *param_shape, seed=33)
    identity = torch.ones(batch, 1, 1, dtype=F64)
    scalar_delta = td_error(r, v_t, v_tm1, discount)
    scalar_e = accumulating_trace(e, grad, discount)
    for transition in (identity, lambda x: x.clone(), None):
        delta = td_error(r[:, None], v_t[:, None], v_tm1[:, None], discount, transition)
        np.testing.assert_array_equal(delta[:, 0], scalar_delta)
        op_e = accumulating_trace(e[:, None], grad[:, None], discount, transition)
        np.testing.assert_allclose(op_e[:, 0], scalar_e, rtol=1e-15)
        decayed = e[:, None].clone()
        decay_trace_(decayed, discount, transition)
        np.testing.assert_allclose(decayed[:, 0], discount.view(-1, 1, 1) * e, rtol=1e-15)
        np.testing.assert_allclose(
            trace_increment(delta, op_e), trace_increment(scalar_delta, scalar_e), rtol=1e-15
        )
    horizon = 5
    rs, vs = _randn(horizon, batch, seed=34), _randn(horizon, batch, seed=35)
    ds = torch.rand(horizon, batch, generator=_rng(36), dtype=F64)
    eye = torch.ones(horizon, batch, 1, 1, dtype=F64)
    np.testing.assert_allclose(
        lambda_returns(rs[..., None], ds, vs[..., None], 0.7, eye)[..., 0],
        lambda_returns(rs, ds, vs, 0.7),
        rtol=1e-14,
    )


@pytest.mark.parametrize("lam, gamma", [(0.0, 0.9), (0.6, 1.0), (1.0, 1.0), (0.9, 0.8)])
def test_operator_backward_view_equals_forward_view(lam, gamma):
    """docs/algorithm.md#the-eligibility-trace with random J_t, g_t and ∂g_t/∂θ (θ fixed):
    Σ_t δ_t · e_t with e_t = γλ J_t e_{t−1} + ∂g_t/∂θ (J_t: the Jacobian INTO s_t) and
    δ_t = (l_{t+1} + γ g_{t+1}) J_{t+1} − g_t (g_{T−1} := 0) equals Σ_t (G^λ_t − g_t) · ∂g_t/∂θ,
    with G^λ from its recursion written out here. Run twice: pure traces, and in place
    (decay_trace_)."""
    horizon, batch, d, param_shape = 7, 2, 3, (4,)
    jac = _randn(horizon, batch, d, d, seed=37) / np.sqrt(d)  # jac[t] = J_t
    loss_grad = _randn(horizon, batch, d, seed=38)  # loss_grad[t] = l_t (l_0 unused)
    g = _randn(horizon, batch, d, seed=39)
    g[-1] = 0.0  # the future is empty after the last step
    dg = _randn(horizon, batch, d, *param_shape, seed=40)

    forward = torch.zeros(batch, *param_shape, dtype=F64)
    g_lambda = torch.zeros(batch, d, dtype=F64)  # G^λ_{T−1} = 0
    for t in reversed(range(horizon - 1)):
        mixed = (1 - lam) * g[t + 1] + lam * g_lambda
        g_lambda = torch.stack(
            [(loss_grad[t + 1, b] + gamma * mixed[b]) @ jac[t + 1, b] for b in range(batch)]
        )
        for b in range(batch):
            forward[b] += sum((g_lambda[b, k] - g[t, b, k]) * dg[t, b, k] for k in range(d))

    pure = torch.zeros(batch, *param_shape, dtype=F64)
    e = torch.zeros(batch, d, *param_shape, dtype=F64)
    in_place = torch.zeros(batch, *param_shape, dtype=F64)
    e_buffer = torch.zeros(batch, d, *param_shape, dtype=F64)
    for t in range(horizon - 1):  # at step t+1: δ_t with J_{t+1}, then e_t with J_t
        delta = td_error(loss_grad[t + 1], g[t + 1], g[t], gamma, jac[t + 1])
        e = accumulating_trace(e, dg[t], gamma * lam, jac[t] if t > 0 else None)
        pure += trace_increment(delta, e)
        decay_trace_(e_buffer, gamma * lam, jac[t] if t > 0 else None).add_(dg[t])
        in_place += trace_increment(delta, e_buffer)
    np.testing.assert_allclose(pure, forward, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(in_place, forward, rtol=1e-11, atol=1e-12)


class LoopOperator:
    """A BlockOperator that applies (B, d, d) matrices with an explicit per-element loop and
    records every block it was handed."""

    def __init__(self, matrices):
        self.shape, self.matrices, self.blocks = tuple(matrices.shape), matrices, []

    def apply_block(self, e, out, rows, scale):
        self.blocks.append((rows, tuple(e.shape)))
        for offset, b in enumerate(range(*rows.indices(self.shape[0]))):
            out[offset] = scale * (self.matrices[b] @ e[offset])
        return out


def _explicit_increment(delta, e):
    """sum_b sum_k delta[b, k] e[b, k, ...] by a loop."""
    total = torch.zeros(e.shape[2:], dtype=e.dtype)
    for b in range(e.shape[0]):
        for k in range(e.shape[1]):
            total += delta[b, k] * e[b, k]
    return total


@pytest.mark.parametrize("kind", ["tensor", "operator", "callable"])
@pytest.mark.parametrize("scratch_elements", [3, 7, 40, 130, None])
@pytest.mark.parametrize("per_batch_discount", [False, True])
def test_tiled_decay_and_fused_contraction_match_explicit_loops(
    kind, scratch_elements, per_batch_discount
):
    """Tiles of column blocks (scratch smaller than one batch element: 3 = one column, 7 = two
    uneven ones), runs of whole elements (40, 130) or the default: all give M e in place, and the
    contraction accumulated tile by tile equals the explicit sum."""
    batch, d, param_shape = 4, 3, (2, 5)  # one batch element: 3 x 10 = 30 elements
    matrices, e = _randn(batch, d, d, seed=50), _randn(batch, d, *param_shape, seed=51)
    delta = _randn(batch, d, seed=52)
    discount = torch.tensor([0.7, 0.0, 1.0, 0.3], dtype=F64) if per_batch_discount else 0.8
    factor = discount.view(-1, 1, 1, 1) if per_batch_discount else discount
    expected = factor * _left_loop(matrices, e)
    start = _randn(*param_shape, seed=53)
    increment = start.clone()
    transition = {
        "tensor": matrices,
        "operator": LoopOperator(matrices),
        "callable": lambda block: torch.einsum("bij,bjp->bip", matrices, block),
    }[kind]
    scratch = None if scratch_elements is None else torch.empty(scratch_elements, dtype=F64)
    pointer = e.data_ptr()
    out = decay_trace_(e, discount, transition, scratch=scratch, delta_t=delta, increment=increment)
    assert out is e and e.data_ptr() == pointer
    np.testing.assert_allclose(e, expected, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(
        increment, start + _explicit_increment(delta, expected), rtol=1e-12, atol=1e-13
    )
    if kind == "operator":  # every tile fits the scratch, and the tiles cover e exactly once
        limit = scratch_elements or trace_decay.DECAY_SCRATCH_NUMEL
        assert all(np.prod(shape) <= limit for _, shape in transition.blocks)
        assert sum(np.prod(shape) for _, shape in transition.blocks) == e.numel()


def test_callable_transition_sees_column_blocks_bounded_by_the_tile(monkeypatch):
    monkeypatch.setattr(trace_decay, "DECAY_SCRATCH_NUMEL", 24)
    batch, d = 2, 3
    matrices, e = _randn(batch, d, d, seed=54), _randn(batch, d, 10, seed=55)
    expected = 0.5 * _left_loop(matrices, e)
    shapes = []

    def transition(block):
        shapes.append(tuple(block.shape))
        return torch.einsum("bij,bjp->bip", matrices, block)

    decay_trace_(e, 0.5, transition)
    np.testing.assert_allclose(e, expected, rtol=1e-13, atol=1e-14)
    assert shapes == [(2, 3, 4), (2, 3, 4), (2, 3, 2)]  # 24 // (2 * 3) = 4 columns per block


def test_contraction_without_transition_is_the_summed_trace_increment():
    """Scalar form (TD(lambda)) and operator form with the identity."""
    e, delta = _randn(3, 4, 2, seed=56), _randn(3, seed=57)
    decayed = 0.6 * e
    increment = torch.zeros(4, 2, dtype=F64)
    decay_trace_(e, 0.6, delta_t=delta, increment=increment)
    np.testing.assert_allclose(increment, sum(delta[b] * decayed[b] for b in range(3)), rtol=1e-13)
    e3, delta3 = _randn(3, 2, 5, seed=58), _randn(3, 2, seed=59)
    expected = _explicit_increment(delta3, 0.6 * e3)
    increment3 = torch.zeros(5, dtype=F64)
    decay_trace_(e3, 0.6, delta_t=delta3, increment=increment3)
    np.testing.assert_allclose(increment3, expected, rtol=1e-13)


def test_decay_with_an_operator_allocates_nothing_trace_sized():
    """With a scratch passed in, the only allocations are per-tile views: far below e's size."""
    from torch.profiler import ProfilerActivity, profile

    batch, d = 3, 8
    matrices, e = _randn(batch, d, d, seed=60), _randn(batch, d, 3000, seed=61)
    scratch = torch.empty(2000, dtype=F64)
    delta, increment = _randn(batch, d, seed=62), torch.zeros(3000, dtype=F64)
    operator = trace_decay._MatrixOperator(matrices)
    decay_trace_(e, 0.9, operator, scratch=scratch, delta_t=delta, increment=increment)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        decay_trace_(e, 0.9, operator, scratch=scratch, delta_t=delta, increment=increment)
    allocated = sum(max(event.cpu_memory_usage, 0) for event in profiler.events())
    assert allocated < 0.01 * e.numel() * e.element_size()


def test_allocated_traces_are_column_blocks_of_one_buffer():
    shapes = [(2, 3, 4, 5), (2, 3, 4), (2, 3, 1)]
    buffer, views = traces.allocate_traces(shapes, dtype=F64)
    assert buffer.shape == (2, 3, 25) and buffer.is_contiguous()
    assert [tuple(v.shape) for v in views] == shapes
    assert torch.count_nonzero(buffer) == 0
    for index, view in enumerate(views):
        view.fill_(index + 1.0)
    np.testing.assert_array_equal(buffer[0, 0], [1.0] * 20 + [2.0] * 4 + [3.0])
    # one decay of the buffer = the decay of each trace on its own
    matrices = _randn(2, 3, 3, seed=63)
    buffer.copy_(_randn(2, 3, 25, seed=64))
    separately = [0.7 * _left_loop(matrices, view.clone()) for view in views]
    decay_trace_(buffer, 0.7, matrices)
    for view, expected in zip(views, separately, strict=True):
        np.testing.assert_allclose(view, expected, rtol=1e-13, atol=1e-14)
    scratch = traces.decay_scratch(buffer)
    assert scratch.dtype == F64 and scratch.numel() == buffer.numel()  # small: one tile
    with pytest.raises(ValueError, match=r"same \(B, d_out\)"):
        traces.allocate_traces([(2, 3, 4), (2, 4, 4)], dtype=F64)


def test_lambda_returns_with_a_callable_transition_equal_the_matrix_form():
    horizon, batch, d = 5, 2, 3
    r, v = _randn(horizon, batch, d, seed=65), _randn(horizon, batch, d, seed=66)
    matrices = _randn(horizon, batch, d, d, seed=67)
    calls = []

    def row_times(t, u):
        calls.append(t)
        return torch.einsum("bi,bij->bj", u, matrices[t])

    expected = lambda_returns(r, 0.9, v, 0.6, matrices)
    np.testing.assert_allclose(lambda_returns(r, 0.9, v, 0.6, row_times), expected, rtol=1e-14)
    assert calls == [4, 3, 2, 1, 0]


def test_bad_tiling_and_contraction_arguments_are_named():
    e, delta = torch.zeros(3, 2, 5, dtype=F64), torch.zeros(3, 2, dtype=F64)
    matrices = torch.ones(3, 2, 2, dtype=F64)
    with pytest.raises(ValueError, match="delta_t and increment go together"):
        decay_trace_(e, 1.0, matrices, delta_t=delta)
    with pytest.raises(ValueError, match=r"increment must have the parameter shape \(5,\)"):
        decay_trace_(e, 1.0, matrices, delta_t=delta, increment=torch.zeros(4, dtype=F64))
    with pytest.raises(ValueError, match=r"delta_t must have shape \(B, d_out\)"):
        decay_trace_(
            e,
            1.0,
            matrices,
            delta_t=torch.zeros(3, dtype=F64),
            increment=torch.zeros(2, 5, dtype=F64),
        )
    with pytest.raises(ValueError, match=r"an operator of shape \(3, 4, 4\)"):
        decay_trace_(e, 1.0, LoopOperator(torch.ones(3, 4, 4, dtype=F64)))
    with pytest.raises(ValueError, match=r"trace must have shape \(B, d_out, \*param_shape\)"):
        decay_trace_(torch.zeros(3, dtype=F64), 1.0, lambda x: x)


def test_true_online_update_matches_the_formula():
    batch, n = 3, 4
    w, z, x = (_randn(batch, n, seed=s) for s in (41, 42, 43))
    delta, v, v_old = (_randn(batch, seed=s) for s in (44, 45, 46))
    alpha = torch.tensor([0.1, 0.2, 0.3], dtype=F64)
    got = true_online_td_update(w, z, x, delta, v, v_old, alpha)
    for b in range(batch):
        expected = (
            w[b]
            + alpha[b] * (delta[b] + v[b] - v_old[b]) * z[b]
            - alpha[b] * (v[b] - v_old[b]) * x[b]
        )
        np.testing.assert_allclose(got[b], expected, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(
        true_online_td_update(w, z, x, delta, v, v_old, 0.2),
        true_online_td_update(w, z, x, delta, v, v_old, torch.full((3,), 0.2, dtype=F64)),
    )


# --------------------------------------------------------------------------- bad input


def test_bad_input_names_the_argument():
    v = torch.zeros(3, dtype=F64)
    with pytest.raises(TypeError, match="r_t must be a torch.Tensor"):
        td_error([0.0, 0.0, 0.0], v, v, 1.0)
    with pytest.raises(TypeError, match="v_tm1 must have a floating dtype"):
        td_error(v, v, torch.zeros(3, dtype=torch.int64), 1.0)
    with pytest.raises(ValueError, match="v_t must match v_tm1"):
        td_error(v, torch.zeros(3), v, 1.0)
    with pytest.raises(ValueError, match=r"discount_t must be a float or a tensor of shape"):
        td_error(v, v, v, torch.ones(2, dtype=F64))
    with pytest.raises(TypeError, match="discount_t must be a float"):
        td_error(v, v, v, True)
    with pytest.raises(ValueError, match="transition_t needs the operator form"):
        td_error(v, v, v, 1.0, torch.ones(3, 1, 1, dtype=F64))
    u = torch.zeros(3, 2, dtype=F64)
    with pytest.raises(ValueError, match=r"transition_t must be a tensor of shape \(3, 2, 2\)"):
        td_error(u, u, u, 1.0, torch.ones(3, 3, 3, dtype=F64))
    with pytest.raises(TypeError, match="transition_t must be a torch.Tensor, a callable or None"):
        td_error(u, u, u, 1.0, np.eye(2))
    with pytest.raises(ValueError, match="callable transition_t must return"):
        td_error(u, u, u, 1.0, lambda x: x[:, :1])
    with pytest.raises(ValueError, match="callable transition_t must return .* dtype"):
        decay_trace_(torch.zeros(3, 2, 4, dtype=F64), 0.5, lambda x: x.float())
    e = torch.zeros(3, 2, 5, dtype=F64)
    with pytest.raises(ValueError, match="grad_t must match e_tm1"):
        accumulating_trace(e, torch.zeros(3, 2, 4, dtype=F64), 1.0)
    with pytest.raises(ValueError, match="contiguous"):
        decay_trace_(
            e.transpose(1, 2).contiguous().transpose(1, 2), 1.0, torch.ones(3, 2, 2, dtype=F64)
        )
    with pytest.raises(ValueError, match="scratch must be a contiguous torch.float64 tensor"):
        decay_trace_(e, 1.0, torch.ones(3, 2, 2, dtype=F64), scratch=torch.empty(1, dtype=F64))
    with pytest.raises(ValueError, match="binary"):
        replacing_trace(u, torch.full((3, 2), 0.5, dtype=F64), 0.9)
    with pytest.raises(ValueError, match="e_t must start with delta_t's shape"):
        trace_increment(u, torch.zeros(3, 3, 4, dtype=F64))
    with pytest.raises(ValueError, match="lambda_ must be a float or a tensor whose shape"):
        lambda_returns(
            torch.zeros(4, 2, dtype=F64),
            1.0,
            torch.zeros(4, 2, dtype=F64),
            torch.zeros(2, dtype=F64),
        )
    with pytest.raises(ValueError, match=r"transition_t must have shape \(4, 2, 3, 3\)"):
        lambda_returns(
            torch.zeros(4, 2, 3, dtype=F64),
            1.0,
            torch.zeros(4, 2, 3, dtype=F64),
            1.0,
            torch.zeros(4, 2, 3, 2, dtype=F64),
        )
