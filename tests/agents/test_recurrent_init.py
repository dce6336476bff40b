"""recurrent_init and spectral_radius: the recurrent matrix they produce (checked with numpy's
eigenvalues and Q^T Q), the parameters they leave alone, and how learners record them."""

import numpy as np
import pytest
import torch

from agents.bp_lambda import BPLambda
from agents.bptt import BPTT
from agents.cores import make_core
from agents.experiments.hyperparameters import hyperparameters_of
from agents.registry import LEARNERS
from tests.agents.autograd_reference import make_data, replay_env

KINDS = {"rnn": 1, "lstm": 4, "gru": 3}  # gates: (H, H) blocks of W_hh


def recurrent_blocks(core):
    """Every (H, H) gate block of every layer's W_hh, as float64 numpy arrays."""
    layers = core.layers if hasattr(core, "layers") else [core]
    H = core.hidden_size
    return [
        block
        for layer in layers
        for block in layer.weight_hh.detach().double().numpy().reshape(-1, H, H)
    ]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("radius", [None, 0.9])
def test_orthogonal_blocks_times_the_radius(kind, radius):
    torch.manual_seed(0)
    core = make_core(kind, 3, 16, num_layers=2, recurrent_init="orthogonal", spectral_radius=radius)
    blocks = recurrent_blocks(core)
    assert len(blocks) == 2 * KINDS[kind]
    scale = 1.0 if radius is None else radius
    for block in blocks:  # float32 parameters: orthogonal to float32 precision
        np.testing.assert_allclose(block.T @ block, scale**2 * np.eye(16), atol=2e-6)
        np.testing.assert_allclose(np.abs(np.linalg.eigvals(block)), scale, atol=2e-6)
    assert not np.allclose(blocks[0], blocks[1])  # each block drawn afresh


@pytest.mark.parametrize("kind", KINDS)
def test_uniform_with_a_spectral_radius_is_rescaled_to_it(kind):
    torch.manual_seed(0)
    plain = make_core(kind, 3, 16)
    torch.manual_seed(0)
    scaled = make_core(kind, 3, 16, spectral_radius=1.3)
    for block, original in zip(recurrent_blocks(scaled), recurrent_blocks(plain), strict=True):
        assert np.abs(np.linalg.eigvals(block)).max() == pytest.approx(1.3, rel=1e-5)
        ratio = block / original  # a pure rescaling of the uniform draw
        np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_only_the_recurrent_matrix_changes(kind):
    """The uniform draws of W_ih and the biases come first and are the same under either init."""
    torch.manual_seed(3)
    uniform = make_core(kind, 3, 8)
    torch.manual_seed(3)
    orthogonal = make_core(kind, 3, 8, recurrent_init="orthogonal")
    for (name, a), (_, b) in zip(
        uniform.named_parameters(), orthogonal.named_parameters(), strict=True
    ):
        assert torch.equal(a, b) == (name != "weight_hh"), name
    bound = 1 / np.sqrt(8)
    assert uniform.weight_hh.abs().max() <= bound  # the default is torch's U(-1/√H, 1/√H)


def test_every_recurrent_learner_takes_the_init_as_hyperparameters():
    for name, entry in LEARNERS.items():
        if name == "td_lambda":
            continue
        hyperparameters = hyperparameters_of(entry.cls)
        for argument, default in [
            ("num_layers", 1),
            ("recurrent_init", "uniform"),
            ("spectral_radius", None),
        ]:
            assert hyperparameters[argument].default == default, (name, argument)


def test_learners_build_and_checkpoint_the_init(tmp_path):
    env = replay_env("mse", *make_data("mse", 2, 4, 3, 2), 2)
    learner = BPTT(
        env,
        core="gru",
        hidden_size=6,
        num_layers=2,
        recurrent_init="orthogonal",
        spectral_radius=0.8,
        seed=0,
        dtype="float64",
    )
    for block in recurrent_blocks(learner.core):
        np.testing.assert_allclose(block.T @ block, 0.64 * np.eye(6), atol=1e-6)
    learner.learn(episodes=1).save(tmp_path / "run")
    saved = torch.load(tmp_path / "run.pt", weights_only=True)["hyperparameters"]
    assert {k: saved[k] for k in ("core", "num_layers", "recurrent_init", "spectral_radius")} == {
        "core": "gru",
        "num_layers": 2,
        "recurrent_init": "orthogonal",
        "spectral_radius": 0.8,
    }
    loaded = BPTT.load(tmp_path / "run", env=env)
    assert (loaded.recurrent_init, loaded.spectral_radius, loaded.num_layers) == (
        "orthogonal",
        0.8,
        2,
    )
    for a, b in zip(loaded.core.parameters(), learner.core.parameters(), strict=True):
        assert torch.equal(a, b)


def test_the_default_init_is_unchanged_for_the_same_seed():
    env = replay_env("mse", *make_data("mse", 2, 4, 3, 2), 2)
    torch.manual_seed(5)
    expected = make_core("rnn", 3, 6)
    readout = torch.nn.Linear(6, 2)
    learner = BPLambda(env, hidden_size=6, seed=5)
    assert learner.recurrent_init == "uniform" and learner.spectral_radius is None
    for a, b in zip(
        [*learner.core.parameters(), *learner.readout.parameters()],
        [*expected.parameters(), *readout.parameters()],
        strict=True,
    ):
        assert torch.equal(a, b)
