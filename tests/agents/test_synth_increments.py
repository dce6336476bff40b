"""SynthIncrements against the clipping formula written out: grad -= inc / max(|inc|, B)."""

import pytest
import torch

from agents.synth_increments import SynthIncrements


def parameters_with_zero_grads():
    torch.manual_seed(0)
    parameters = [torch.zeros(3, 4, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)]
    for parameter in parameters:
        parameter.grad = torch.zeros_like(parameter)
    return parameters


@pytest.mark.parametrize("clip", [True, False])
def test_per_state_rows_equal_the_formula_token_by_token(clip):
    batch = 4
    parameters = parameters_with_zero_grads()
    # rows of very different sizes, so that some are clipped and some are not
    scales = torch.tensor([0.1, 1.0, 10.0, 100.0], dtype=torch.float64)
    increments = [
        torch.randn(4, *p.shape, dtype=torch.float64) * scales.view(-1, *[1] * p.dim())
        for p in parameters
    ]
    adder = SynthIncrements(clip, "cpu")
    peaks = adder.add_per_state(parameters, increments, batch)

    rescaled = 0
    for parameter, increment, peak in zip(parameters, increments, peaks, strict=True):
        rows = increment.view(4, -1)
        expected_norms = rows.pow(2).sum(1).sqrt()
        divisors = expected_norms.clamp(min=batch) if clip else torch.full((4,), float(batch))
        expected = -(rows / divisors.unsqueeze(1)).sum(0).view_as(parameter)
        torch.testing.assert_close(parameter.grad, expected, rtol=1e-12, atol=0)
        torch.testing.assert_close(peak, rows.abs().max(1).values, rtol=0, atol=0)
        rescaled += int((expected_norms > batch).sum())
    assert adder.clip_fraction() == (rescaled / 8 if clip else None)
    assert not clip or 0 < rescaled < 8


def test_one_token_equals_one_row_of_the_per_state_path():
    batch = 3
    increments = [torch.randn(3, 4, dtype=torch.float64) * 5, torch.randn(3, dtype=torch.float64)]
    one_token, per_state = parameters_with_zero_grads(), parameters_with_zero_grads()
    token_adder, state_adder = SynthIncrements(True, "cpu"), SynthIncrements(True, "cpu")
    state_adder.add_per_state(per_state, [i.unsqueeze(0) for i in increments], batch)
    token_adder.add(one_token, [i.clone() for i in increments], batch)
    for a, b in zip(one_token, per_state, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=0)
    assert token_adder.clip_fraction() == state_adder.clip_fraction()


def test_an_increment_whose_norm_overflows_is_rescaled_to_norm_one():
    """float32 entries of 1e20: the norm overflows to inf (a naive Δθ / max(‖Δθ‖, B) would add
    nothing); the increment still enters as its direction, of norm 1, and counts as clipped."""
    parameter = torch.zeros(5, 6)
    parameter.grad = torch.zeros_like(parameter)
    torch.manual_seed(3)
    increment = torch.randn(5, 6) * 1e20
    assert torch.isinf(increment.norm())
    adder = SynthIncrements(True, "cpu")
    adder.add([parameter], [increment], batch=10)
    wide = increment.double()
    expected = -(wide / wide.pow(2).sum().sqrt()).float()
    torch.testing.assert_close(parameter.grad, expected, rtol=1e-6, atol=0)
    assert adder.clip_fraction() == 1.0


def test_the_peaks_flag_exactly_the_non_finite_rows():
    """Finite rows, however large, give finite peaks; a NaN or inf entry gives a non-finite one."""
    parameter = torch.zeros(4)
    parameter.grad = torch.zeros_like(parameter)
    rows = torch.tensor(
        [[1e30, -1e30, 1e30, 1e30], [1.0, float("nan"), 0.0, 0.0], [0.0, 0.0, float("inf"), 1.0]]
    )
    (peaks,) = SynthIncrements(True, "cpu").add_per_state([parameter], [rows], batch=2)
    assert torch.isfinite(peaks).tolist() == [True, False, False]
