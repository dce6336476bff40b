"""Copy-repeat against an explicit construction, torch's BCE and the paper's curriculum."""

import math
import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import bpl_envs  # noqa: F401  (registers the ids)
from bpl_envs.copy_repeat import CopyRepeatCurriculum, CopyRepeatEnv

PAPER_LENGTHS = [5, 7, 9, 12, 15, 19, 23, 28, 33, 39, 45, 52, 59, 67]


def rollout(env, seed, actions):
    """Reset with ``seed`` and answer every token with ``actions(t)``; record the stream."""
    obs, info = env.reset(seed=seed)
    assert info == {}
    inputs, infos, rewards, terminated, t = [obs], [], [], False, 0
    while not terminated:
        obs, reward, terminated, truncated, info = env.step(actions(t))
        assert truncated is False
        inputs.append(obs)
        infos.append(info)
        rewards.append(reward)
        t += 1
    return np.array(inputs[:-1]), infos, np.array(rewards), inputs[-1]


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 6),
    r=st.integers(1, 6),
    bits=st.integers(1, 9),
    seed=st.integers(0, 2**31),
)
def test_stream_layout_matches_an_explicit_construction(n, r, bits, seed):
    env = CopyRepeatEnv(pattern_length=n, repeats=r, bits=bits, max_repeats=6)
    rng = np.random.default_rng(seed)
    actions = rng.normal(size=(100, bits + 1)).astype(np.float32) * 4
    inputs, infos, rewards, final_obs = rollout(env, seed, lambda t: actions[t])

    # The documented draw: default_rng(seed) == the generator that reset(seed=seed) creates.
    pattern = (np.random.default_rng(seed).random((n, bits)) < 0.5).astype(np.float32)
    length = (r + 1) * n + 3
    expected_inputs = np.zeros((length, bits + 2), np.float32)
    expected_targets = np.zeros((length, bits + 1), np.float32)
    expected_inputs[0, bits] = 1.0
    for i in range(n):
        expected_inputs[1 + i, :bits] = pattern[i]
    expected_inputs[n + 1, bits + 1] = np.float32(r / 10)
    for k in range(r * n):  # the answer: the pattern, again and again
        expected_targets[n + 2 + k, :bits] = pattern[k % n]
    expected_targets[length - 1, bits] = 1.0
    scored = [t >= n + 2 for t in range(length)]

    assert len(infos) == length == env.unwrapped.task.sequence_length
    np.testing.assert_array_equal(inputs, expected_inputs)
    np.testing.assert_array_equal(np.array([i["target"] for i in infos]), expected_targets)
    np.testing.assert_array_equal(np.tile(pattern, (r, 1)), expected_targets[n + 2 : -1, :bits])
    assert [i["scored"] for i in infos] == scored
    np.testing.assert_array_equal(final_obs, np.zeros(bits + 2, np.float32))
    assert all(inputs[t] in env.observation_space for t in range(length))

    # Rewards and losses: torch's BCE-with-logits (mean over channels) on scored steps only.
    reference = F.binary_cross_entropy_with_logits(
        torch.tensor(actions[:length], dtype=torch.float64),
        torch.tensor(expected_targets, dtype=torch.float64),
        reduction="none",
    ).mean(-1).numpy() * np.array(scored)
    # atol: float64 rounding of a mean over channels whose terms reach ~10 (hypothesis found a
    # 5.6e-5 loss 5e-16 away from torch's, relative 9e-12, with n=3, r=5, bits=1, seed=113)
    np.testing.assert_allclose([i["loss"] for i in infos], reference, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rewards, -reference, rtol=1e-12, atol=1e-14)
    bit_errors = ((actions[:length] > 0) != (expected_targets > 0.5)).sum(1) * np.array(scored)
    assert [i["bit_errors"] for i in infos] == bit_errors.tolist()


def test_any_finite_logit_is_scored_as_is():
    env = CopyRepeatEnv(bits=2)
    big = np.array([300.0, -250.0, 1e6])  # far outside the nominal [-1, 1] bounds: not clipped
    _, infos, rewards, _ = rollout(env, 0, lambda _t: big)
    assert [info["scored"] for info in infos] == [False, False, False, True, True]
    for t in (3, 4):
        expected = F.binary_cross_entropy_with_logits(
            torch.tensor(big), torch.tensor(infos[t]["target"], dtype=torch.float64)
        ).item()
        assert infos[t]["loss"] == pytest.approx(expected, rel=1e-12) and expected >= 100
        assert rewards[t] == -infos[t]["loss"]


def test_reset_options_change_the_lengths_of_this_and_later_sequences():
    env = CopyRepeatEnv()
    env.reset(seed=0, options={"pattern_length": 4, "repeats": 3})
    assert env.task.sequence_length == (3 + 1) * 4 + 3
    env.reset()
    assert env.task.sequence_length == 19
    env.reset(options={"repeats": 1})
    assert env.task.sequence_length == (1 + 1) * 4 + 3
    vector = gym.make_vec("bpl/CopyRepeat-v0", num_envs=2)
    obs, _ = vector.reset(seed=0, options={"pattern_length": 2, "repeats": 2})
    assert vector.task.sequence_length == 9 and obs.shape == (2, 10)


def test_bad_reset_options_are_rejected_and_leave_the_lengths_unchanged():
    env = CopyRepeatEnv(pattern_length=2, max_repeats=4)
    with pytest.raises(
        ValueError,
        match=r"unknown reset option\(s\) \['length'\].*"
        r"\['pattern_length', 'repeats'\]",
    ):
        env.reset(options={"length": 3})
    with pytest.raises(ValueError, match=r"repeats must be an int in \[1, 4\], got 5"):
        env.reset(options={"pattern_length": 3, "repeats": 5})
    with pytest.raises(TypeError, match=r"pattern_length must be an int >= 1, got 2.0"):
        env.reset(options={"pattern_length": 2.0})
    env.reset(seed=0)
    assert env.task.sequence_length == (1 + 1) * 2 + 3


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"pattern_length": 0}, ValueError, r"pattern_length must be an int >= 1, got 0"),
        ({"repeats": 0}, ValueError, r"repeats must be an int in \[1, 20\], got 0"),
        ({"repeats": 21}, ValueError, r"repeats must be an int in \[1, 20\], got 21"),
        ({"repeats": 3, "max_repeats": 2}, ValueError, r"repeats must be an int in \[1, 2\]"),
        ({"bits": 0}, ValueError, r"bits must be an int >= 1, got 0"),
        ({"bits": 8.0}, TypeError, r"bits must be an int >= 1, got 8.0 \(float\)"),
        ({"pattern_length": True}, TypeError, r"pattern_length must be an int >= 1, got True"),
        ({"max_repeats": 0}, ValueError, r"max_repeats must be an int >= 1, got 0"),
        ({"curriculum": "yes"}, TypeError, r"curriculum must be a CopyRepeatCurriculum or None"),
        (
            {"pattern_length": 2, "curriculum": CopyRepeatCurriculum()},
            ValueError,
            r"give pattern_length and repeats to CopyRepeatCurriculum",
        ),
        (
            {"render_mode": "human"},
            ValueError,
            r"render_mode must be None or one of \['ansi', 'rgb_array'\]",
        ),
    ],
)
def test_invalid_arguments_are_rejected_with_the_argument_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        CopyRepeatEnv(**kwargs)
    with pytest.raises(error, match=message):
        gym.make_vec("bpl/CopyRepeat-v0", num_envs=2, **kwargs)


def test_repeat_channel_bound_is_max_repeats_over_ten_and_contains_every_count():
    env = CopyRepeatEnv(repeats=7, max_repeats=7, bits=3)
    np.testing.assert_array_equal(env.observation_space.high, np.float32([1, 1, 1, 1, 0.7]))
    np.testing.assert_array_equal(env.observation_space.low, np.zeros(5, np.float32))
    inputs, _, _, _ = rollout(env, 1, lambda _t: np.zeros(4, np.float32))
    assert inputs[2, -1] == np.float32(0.7) and all(x in env.observation_space for x in inputs)


def test_curriculum_rule_gives_the_papers_sequence_lengths():
    curriculum = CopyRepeatCurriculum()
    lengths = [curriculum.sequence_length]
    for _ in range(len(PAPER_LENGTHS) - 1):
        assert curriculum.update(0.0) is True
        lengths.append(curriculum.sequence_length)
    assert lengths == PAPER_LENGTHS
    stages = [(u.pattern_length, u.repeats) for u in curriculum.history]
    assert stages[:5] == [(1, 1), (2, 1), (2, 2), (3, 2), (3, 3)]
    for n, r in stages:
        assert (r + 1) * n + 3 in PAPER_LENGTHS


def test_curriculum_advances_only_strictly_below_the_threshold():
    curriculum = CopyRepeatCurriculum(pattern_length=3, repeats=3, threshold_bits=0.2)
    assert curriculum.update(0.2) is False and curriculum.update(0.7) is False
    assert (curriculum.pattern_length, curriculum.repeats) == (3, 3)
    assert curriculum.update(0.1999) is True
    assert (curriculum.pattern_length, curriculum.repeats) == (4, 3)
    assert [u.advanced for u in curriculum.history] == [False, False, True]
    assert [u.loss_bits for u in curriculum.history] == [0.2, 0.7, 0.1999]
    restored = pickle.loads(pickle.dumps(curriculum))
    assert (restored.pattern_length, restored.repeats, restored.history) == (
        4,
        3,
        curriculum.history,
    )
    from_state = CopyRepeatCurriculum()
    from_state.load_state_dict(curriculum.state_dict())
    assert (
        from_state.pattern_length,
        from_state.repeats,
        from_state.threshold_bits,
        from_state.history,
    ) == (4, 3, 0.2, curriculum.history)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"pattern_length": 0}, ValueError, "pattern_length must be an int >= 1"),
        ({"repeats": 1.5}, TypeError, "repeats must be an int >= 1"),
        ({"threshold_bits": 0.0}, ValueError, "threshold_bits must be a finite number > 0, got 0"),
        ({"threshold_bits": "low"}, TypeError, "threshold_bits must be a finite number > 0"),
    ],
)
def test_curriculum_rejects_invalid_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        CopyRepeatCurriculum(**kwargs)


def test_curriculum_rejects_invalid_losses():
    with pytest.raises(ValueError, match="loss_bits must be a finite number >= 0, got nan"):
        CopyRepeatCurriculum().update(float("nan"))
    with pytest.raises(ValueError, match="got -0.5"):
        CopyRepeatCurriculum().update(-0.5)


def oracle_logits(observations, n, r, bits, confidence=20.0):
    """Perfect logits for a batch of copy-repeat sequences, read from the observations only.

    observations: (T, B, bits + 2) -> logits (T, B, bits + 1).
    """
    pattern = observations[1 : n + 1, :, :bits]  # (N, B, bits)
    logits = np.full((observations.shape[0], observations.shape[1], bits + 1), -confidence)
    for k in range(r * n):
        logits[n + 2 + k, :, :bits] = np.where(pattern[k % n] > 0.5, confidence, -confidence)
    logits[-1, :, bits] = confidence
    return logits.astype(np.float32)


def run_batch(vec_env, predict):
    """One batch of the learner loop; ``predict`` gets the observations so far (t + 1, B, in)."""
    obs, _ = vec_env.reset()
    seen, infos = [obs], []
    while True:
        obs, _, terminated, _, info = vec_env.step(predict(np.array(seen)))
        infos.append(info)
        if terminated.all():
            return infos
        seen.append(obs)


def test_env_driven_curriculum_advances_for_perfect_predictions_and_not_for_zeros():
    curriculum = CopyRepeatCurriculum()
    env = gym.make_vec("bpl/CopyRepeat-v0", num_envs=5, curriculum=curriculum)
    env.reset(seed=0)
    reached = []
    for _ in range(4):
        n, r = curriculum.pattern_length, curriculum.repeats
        length = (r + 1) * n + 3

        def perfect(seen, n=n, r=r, length=length):
            full = np.zeros((length, 5, 10), np.float32)
            full[: len(seen)] = seen
            return oracle_logits(full, n, r, 8)[len(seen) - 1]

        infos = run_batch(env, perfect)
        assert len(infos) == length and env.task.sequence_length == length
        final = infos[-1]
        assert final["curriculum_advanced"].all() and final["_curriculum_advanced"].all()
        # softplus(-20) nats per entry, in bits
        np.testing.assert_allclose(
            final["curriculum_loss_bits"], math.log1p(math.exp(-20)) / math.log(2), rtol=1e-6
        )
        assert "curriculum_loss_bits" not in infos[-2]
        reached.append(curriculum.sequence_length)
    assert reached == PAPER_LENGTHS[1:5]
    assert len(curriculum.history) == 4

    infos = run_batch(env, lambda _seen: np.zeros((5, 9), np.float32))
    assert not infos[-1]["curriculum_advanced"].any()
    np.testing.assert_allclose(infos[-1]["curriculum_loss_bits"], 1.0, rtol=1e-12)  # ln 2 nats
    assert curriculum.sequence_length == PAPER_LENGTHS[4]


def test_curriculum_loss_is_the_mean_bce_in_bits_over_the_scored_entries_of_the_batch():
    curriculum = CopyRepeatCurriculum(pattern_length=3, repeats=2, threshold_bits=1e-9)
    env = gym.make_vec("bpl/CopyRepeat-v0", num_envs=4, curriculum=curriculum)
    env.reset(seed=5)
    rng = np.random.default_rng(0)
    actions, targets, scored = [], [], []

    def predict(_seen):
        actions.append(rng.normal(size=(4, 9)) * 2)
        return actions[-1]

    infos = run_batch(env, predict)
    targets = np.array([info["target"] for info in infos])
    scored = np.array([info["scored"][0] for info in infos])
    entries = F.binary_cross_entropy_with_logits(
        torch.tensor(np.array(actions)[scored]), torch.tensor(targets[scored], dtype=torch.float64)
    )
    expected_bits = entries.item() / math.log(2)
    np.testing.assert_allclose(infos[-1]["curriculum_loss_bits"], expected_bits, rtol=1e-12)
    assert curriculum.history[-1].loss_bits == pytest.approx(expected_bits, rel=1e-12)


def test_single_env_updates_its_curriculum_after_every_sequence():
    curriculum = CopyRepeatCurriculum()
    env = CopyRepeatEnv(curriculum=curriculum)
    for expected_length in PAPER_LENGTHS[:3]:
        obs, _ = env.reset(seed=1)
        assert env.task.sequence_length == expected_length
        n, r = curriculum.pattern_length, curriculum.repeats
        seen = [obs]
        for t in range(expected_length):
            full = np.zeros((expected_length, 1, 10), np.float32)
            full[: len(seen), 0] = seen
            obs, _, terminated, _, info = env.step(oracle_logits(full, n, r, 8)[t, 0])
            seen.append(obs)
        assert terminated and info["curriculum_advanced"] is True
        assert isinstance(info["curriculum_loss_bits"], float)
    with pytest.raises(ValueError, match="conflict with the curriculum"):
        env.reset(options={"repeats": 2})


def test_curriculum_beyond_max_repeats_is_refused_at_reset():
    env = CopyRepeatEnv(max_repeats=3, curriculum=CopyRepeatCurriculum(pattern_length=5, repeats=4))
    with pytest.raises(ValueError, match="repeats=4 but the env has max_repeats=3"):
        env.reset(seed=0)


def test_ansi_render_shows_pattern_targets_and_latest_prediction_as_bits():
    env = CopyRepeatEnv(pattern_length=2, repeats=2, bits=4, render_mode="ansi")
    obs, _ = env.reset(seed=3)
    pattern = (np.random.default_rng(3).random((2, 4)) < 0.5).astype(int)
    rows = ["".join(map(str, row)) for row in pattern]
    text = env.render()
    assert "pattern_length=2, repeats=2, T=9; 0 of 9 tokens answered" in text
    assert f"  {rows[0]}\n  {rows[1]}\n" in text
    assert f"t=4    target {rows[0]}|0" in text and "t=8    target 0000|1" in text
    assert "no prediction received yet" in text
    logits = np.array([1.0, -1.0, 1.0, -1.0, -1.0], np.float32)
    for _ in range(5):
        env.step(logits)
    text = env.render()
    wrong = int(((logits[:4] > 0) != pattern[0].astype(bool)).sum())
    assert f"t=4    target {rows[0]}|0   prediction 1010|0   {wrong} wrong" in text
    assert "latest prediction (t=4): 1010|0" in text
    vector = gym.make_vec("bpl/CopyRepeat-v0", num_envs=2, render_mode="ansi")
    vector.reset(seed=0)
    texts = vector.render()
    assert len(texts) == 2
    assert all(text.startswith("CopyRepeat: pattern_length=1") for text in texts)
