"""Property-based tests of SupervisedTaskWrapper: its arguments and the targets it reads.

The wrapper turns any env whose info carries a target into a bpl task, so its inputs come from
two sides: the user's arguments (checked against the oracle below) and the wrapped env's
``info`` (a target of any dtype, shape or value, NaN included). A valid combination is scored
against a scalar formula; anything else raises TypeError/ValueError naming the argument or the
info key, never a silent NaN reward.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from bpl_envs import SupervisedTaskWrapper
from tests.fuzz import (
    INVALID,
    Arg,
    call_with_contract,
    choice_arg,
    garbage,
    names_argument,
    optional_int_arg,
    reference_loss,
    subsets_of,
)


class TargetInInfo(gym.Env):
    """Three steps per episode; ``info["y"]`` is whatever ``targets[t]`` holds (the property
    chooses it), ``info["mark"]`` is True on the last step; actions Discrete(3) or a Box."""

    metadata = {"render_modes": []}

    def __init__(self, targets: list[Any], box_action: bool = False) -> None:
        self.targets = targets
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2, 2), np.float32)
        self.action_space = (
            gym.spaces.Box(-1.0, 1.0, (3,), np.float32) if box_action else gym.spaces.Discrete(3)
        )

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed, options=options)
        self.t = 0
        return np.zeros((2, 2), np.float32), {}

    def step(self, action):
        assert self.action_space.contains(action)
        target, self.t = self.targets[self.t], self.t + 1
        info = {"y": target, "mark": self.t == 3}
        return np.full((2, 2), 0.5, np.float32), 0.0, self.t == 3, False, info


ARGS: dict[str, Arg] = {
    "target_key": Arg(
        st.just("y"),
        st.one_of(st.just("z"), garbage),
        lambda v: v if isinstance(v, str) else INVALID,  # a missing key: KeyError at step
    ),
    "loss": choice_arg(["ce"]),
    "scored": Arg(
        st.sampled_from(["all", "last", "mark", lambda info: bool(info["mark"])]),
        st.one_of(st.integers(), st.none(), st.builds(object)),
        lambda v: v if isinstance(v, str) or callable(v) else INVALID,
    ),
    "output_size": optional_int_arg(1, draw_up_to=4),  # (the first target is class 0)
    "to_action": Arg(
        st.sampled_from([None, lambda prediction: int(np.argmax(prediction))]),
        st.one_of(st.text(max_size=3), st.integers()),
        lambda v: v if v is None or callable(v) else INVALID,
    ),
    "sequence_end_key": Arg(
        st.sampled_from([None, "mark"]),
        st.one_of(st.integers(), st.builds(object)),
        lambda v: v if v is None or isinstance(v, str) else INVALID,
    ),
    "sequence_length": optional_int_arg(1, draw_up_to=5),
}


@given(data=st.data())
def test_every_argument_is_checked_at_the_door(data):
    given_kwargs = data.draw(subsets_of(ARGS, max_size=3), label="kwargs")
    required = {k: v for k, v in {"target_key": "y", "loss": "ce"}.items() if k not in given_kwargs}
    if "sequence_length" not in given_kwargs:
        required["sequence_length"] = 3

    def cross(meanings: dict[str, Any]) -> list[str]:
        clashes = []
        if meanings.get("sequence_length", 3) is None:  # the wrapped env has no spec
            clashes.append("sequence_length")
        return clashes

    wrapper, meanings = call_with_contract(
        lambda **kwargs: SupervisedTaskWrapper(TargetInInfo([0, 1, 2]), **required, **kwargs),
        ARGS,
        given_kwargs,
        cross=cross,
    )
    if wrapper is None:
        return
    output_size = meanings.get("output_size") or 3  # None: Discrete(3) gives 3 classes
    assert wrapper.task.input_size == 4 and wrapper.task.output_size == output_size
    wrapper.reset(seed=0)
    missing = [
        key
        for key in (meanings.get("target_key"), meanings.get("scored"))
        if isinstance(key, str) and key not in ("y", "all", "last", "mark")
    ]
    try:
        _, reward, *_ = wrapper.step(np.linspace(1.0, -1.0, output_size))
    except KeyError as error:  # documented: the info key is looked up at step
        # a key is named as written, or as its repr where it holds control characters ('\x1f');
        # str() of a KeyError is the repr of its message, so the message itself is read
        message = ValueError(error.args[0])
        assert missing and names_argument(message, missing + [repr(k) for k in missing]), error
        return
    assert not missing and math.isfinite(reward)


targets = st.integers(0, 3).flatmap(
    lambda k: (
        st.one_of(  # one draw in four: probably wrong
            st.integers(-1, 3),
            st.sampled_from([1.0, math.nan, "a", None, True, [0.5, 0.5]]),
            st.lists(st.one_of(st.floats(-0.5, 1.5), st.just(math.nan)), min_size=3, max_size=3),
        )
        if k == 3
        else st.one_of(
            st.integers(0, 2),
            st.sampled_from([np.int64(2), np.uint8(1), np.array([0.2, 0.3, 0.5])]),
            st.builds(lambda c: np.eye(3, dtype=np.float32)[c], st.integers(0, 2)),
        )
    )
)


def _target_meaning(value: Any) -> np.ndarray | None:
    """The probability vector a target means for 3 classes, or None if it must be refused."""
    array = np.asarray(value) if not isinstance(value, str | type(None)) else None
    if array is None or array.dtype.kind not in "biuf":
        return None
    if array.ndim == 0 and array.dtype.kind in "iu":
        return np.eye(3)[int(array)] if 0 <= int(array) < 3 else None
    if array.size != 3 or not np.isfinite(array).all():
        return None
    vector = array.astype(np.float32).astype(np.float64).reshape(3)
    fits = (vector >= 0).all() and abs(vector.sum() - 1) <= 1e-4
    return vector if fits else None


@given(data=st.data())
def test_any_target_in_info_is_scored_exactly_or_refused_naming_the_key(data):
    target = data.draw(targets, label="target")
    wrapper = SupervisedTaskWrapper(
        TargetInInfo([target] * 3), target_key="y", loss="ce", sequence_length=3
    )
    wrapper.reset(seed=0)
    logits = np.array([0.5, -1.0, 2.0])
    meaning = _target_meaning(target)
    try:
        _, reward, *_ = wrapper.step(logits)
    except (TypeError, ValueError) as error:
        event("refused")
        assert meaning is None, f"target {target!r} refused: {error!r}"
        assert names_argument(error, ["info['y']"]) or "info['y']" in str(error), repr(error)
        return
    event("scored")
    assert meaning is not None, f"target {target!r} accepted"
    assert reward == pytest.approx(-reference_loss("ce", logits, meaning), rel=1e-9)


# ------------------------------------------------- regressions: what hypothesis found, kept


def test_regression_a_nan_target_is_refused_not_paid_as_a_nan_reward():
    wrapper = SupervisedTaskWrapper(
        TargetInInfo([[math.nan, 0.0, 1.0]] * 3), target_key="y", loss="ce", sequence_length=3
    )
    wrapper.reset(seed=0)
    with pytest.raises(ValueError, match=r"info\['y'\] must be finite"):
        wrapper.step(np.zeros(3))  # was: reward NaN


def test_regression_a_target_that_is_not_a_probability_vector_is_refused():
    wrapper = SupervisedTaskWrapper(
        TargetInInfo([[2.0, 0.0, 0.0]] * 3), target_key="y", loss="ce", sequence_length=3
    )
    wrapper.reset(seed=0)
    with pytest.raises(ValueError, match=r"info\['y'\] must be probability vectors"):
        wrapper.step(np.zeros(3))  # was: scored, and a learner got softmax - y: a wrong gradient


def test_regression_a_missing_key_with_a_control_character_is_named_by_its_repr():
    # hypothesis drew target_key='\x1f': the message names it as '\x1f' (the oracle was wrong)
    wrapper = SupervisedTaskWrapper(
        TargetInInfo([0, 1, 2]), target_key="\x1f", loss="ce", sequence_length=3
    )
    wrapper.reset(seed=0)
    with pytest.raises(KeyError) as raised:
        wrapper.step(np.zeros(3))
    assert raised.value.args[0].startswith(r"the wrapped env's info has no '\x1f' (target_key)")
