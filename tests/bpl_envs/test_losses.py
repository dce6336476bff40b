"""The shared losses against torch's own implementations (an independent computation)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bpl_envs.losses import LOSSES, get_loss

torch_reference = {
    "mse": lambda p, y: F.mse_loss(p, y, reduction="none").mean(-1),
    "bce": lambda p, y: F.binary_cross_entropy_with_logits(p, y, reduction="none").mean(-1),
    "ce": lambda p, y: F.cross_entropy(p, y.argmax(-1), reduction="none"),
}

logits = arrays(np.float64, (3, 5), elements=st.floats(-1e4, 1e4, allow_nan=False))


def one_hot_targets(rng, shape):
    target = np.zeros(shape)
    target[np.arange(shape[0]), rng.integers(0, shape[1], shape[0])] = 1.0
    return target


@pytest.mark.parametrize("name", sorted(LOSSES))
@settings(max_examples=60, deadline=None)
@given(pred=logits, seed=st.integers(0, 2**16))
def test_value_and_gradient_match_torch_autograd(name, pred, seed):
    target = one_hot_targets(np.random.default_rng(seed), pred.shape)
    loss = get_loss(name)

    pred_t = torch.tensor(pred, requires_grad=True)
    reference = torch_reference[name](pred_t, torch.tensor(target))
    reference.sum().backward()

    value = loss.value(pred, target)
    gradient = loss.gradient(pred, target)
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(gradient))
    np.testing.assert_allclose(value, reference.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gradient, pred_t.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_numpy_and_torch_inputs_give_the_same_numbers(name):
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(4, 3, 6)) * 30
    target = one_hot_targets(rng, (12, 6)).reshape(4, 3, 6)
    loss = get_loss(name)
    value_t = loss.value(torch.tensor(pred), torch.tensor(target))
    grad_t = loss.gradient(torch.tensor(pred), torch.tensor(target))
    assert isinstance(value_t, torch.Tensor) and value_t.shape == (4, 3)
    np.testing.assert_allclose(value_t.numpy(), loss.value(pred, target), rtol=1e-12)
    np.testing.assert_allclose(grad_t.numpy(), loss.gradient(pred, target), rtol=1e-12, atol=1e-15)


def test_bce_with_huge_logits_is_finite_and_exact():
    pred = np.array([[1e30, -1e30, 0.0]], dtype=np.float32)
    target = np.array([[1.0, 0.0, 1.0]], dtype=np.float32)
    value = get_loss("bce").value(pred, target)
    assert np.isfinite(value).all()
    np.testing.assert_allclose(value, [np.log(2.0) / 3], rtol=1e-6)


def test_unknown_loss_and_shape_mismatch_are_rejected():
    with pytest.raises(ValueError, match="unknown loss 'hinge'.*'bce', 'ce', 'mse'"):
        get_loss("hinge")
    with pytest.raises(ValueError, match=r"same shape.*\(2, 3\).*\(2, 4\)"):
        get_loss("mse").value(np.zeros((2, 3)), np.zeros((2, 4)))
