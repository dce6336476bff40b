"""Property-based tests of config files (``bpl train --config FILE``, RunConfig): YAML text in.

Hypothesis writes config files with a few keys set to values spelt in many ways (YAML 1.1
oddities such as ``1e-4``, ``010``, ``1:30``, ``yes``, quoted numbers, ``.nan``, lists, maps,
unknown keys) and checks the rule of :mod:`agents.experiments.config`: numbers follow YAML 1.2
(``1e-4`` is a float, ``010`` is ten), a string that spells a value of the expected type counts
as one, and anything else is refused by a TypeError/ValueError naming the key. A learner built
from an accepted file stores exactly the values the spellings mean (the oracle here parses each
spelling itself, with the YAML 1.2 reading written out per spelling below).
"""

from __future__ import annotations

import math
import pathlib
import tempfile
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from agents.cli import main
from agents.experiments.config import load_config, read_yaml
from agents.experiments.training import RunConfig, build_learner
from tests.fuzz import INVALID, names_argument

# Each spelling: (YAML text, its meaning as a float / int / bool / str, or INVALID where no
# value of that kind is meant). Quoted numbers are text that spells a number: accepted.
FLOAT_SPELLINGS = [
    ("1e-4", 1e-4),
    ("1E-4", 1e-4),
    ("3.0e-4", 3e-4),
    ("2.5E+0", 2.5),
    (".5", 0.5),
    ("+0.25", 0.25),
    ("0", 0.0),
    ("1", 1.0),
    ("0.0", 0.0),
    ("'1e-4'", 1e-4),
    ('"0.5"', 0.5),
    ("1_0.5", 10.5),
    (".nan", INVALID),
    (".inf", INVALID),
    ("-1e-3", INVALID),
    ("yes", INVALID),
    ("null", INVALID),
    ("[1e-4]", INVALID),
    ("{a: 1}", INVALID),
    ("abc", INVALID),
    ("1:30", INVALID),
]
INT_SPELLINGS = [
    ("3", 3),
    ("03", 3),  # YAML 1.1 (PyYAML alone): octal 3; 010 would be 8
    ("010", 10),
    ("0o10", 8),
    ("0x0A", 10),
    ("1_0", 10),
    ("'4'", 4),
    ("+2", 2),
    ("3.0", INVALID),
    ("1e1", INVALID),  # a float in YAML 1.2: not an int
    ("true", INVALID),
    ("null", INVALID),
    ("0", 0),
    ("-2", -2),
    ("[3]", INVALID),
    ("1:30", INVALID),  # YAML 1.1: the sexagesimal number 90
    ("three", INVALID),
]
BOOL_SPELLINGS = [
    ("true", True),
    ("false", False),
    ("yes", True),
    ("no", False),
    ("on", True),
    ("Off", False),
    ("'true'", True),
    ("1", INVALID),
    ("0", INVALID),
    ("null", INVALID),
    ("maybe", INVALID),
]


def _strings(choices: list[str]) -> list[tuple[str, Any]]:
    return [(c, c) for c in choices] + [
        (choices[0].upper(), INVALID),
        ("yes", INVALID),
        ("1", INVALID),
        ("null", INVALID),
        ("[rnn]", INVALID),
    ]


def _in(low: float, high: float, spellings: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The spellings with meanings outside [low, high] marked INVALID."""
    return [
        (
            text,
            meaning if meaning is INVALID or meaning is None or low <= meaning <= high else INVALID,
        )
        for text, meaning in spellings
    ]


def _or_null(spellings: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The spellings of an optional value: null and ~ mean None."""
    return [(t, m) for t, m in spellings if t != "null"] + [("null", None), ("~", None)]


HYPERPARAMETERS = {
    "lam": _in(0, 1, FLOAT_SPELLINGS),
    "gamma": _in(0, 1, FLOAT_SPELLINGS),
    "lr_core": _in(0, math.inf, FLOAT_SPELLINGS),
    "lr_synth": _in(0, math.inf, FLOAT_SPELLINGS),
    "sg_weight": _in(0, math.inf, FLOAT_SPELLINGS),
    "hidden_size": _in(1, math.inf, INT_SPELLINGS),
    "synth_hidden": _or_null(_in(1, math.inf, INT_SPELLINGS)),
    "clip_synth_update": BOOL_SPELLINGS,
    "core": _strings(["rnn", "lstm"]),
    "update": _strings(["sequence", "step"]),
}
TOP_LEVEL = {
    "num_envs": _in(1, math.inf, INT_SPELLINGS),
    "updates": _in(1, math.inf, INT_SPELLINGS),
    "seed": _in(0, math.inf, INT_SPELLINGS),
    "log_interval": _in(1, math.inf, INT_SPELLINGS),
    "save_every": _or_null(_in(1, math.inf, INT_SPELLINGS)),
}


@st.composite
def config_files(draw: st.DrawFn) -> tuple[str, dict[str, Any], dict[str, Any], list[str]]:
    """(YAML text, top-level meanings, hyper-parameter meanings, keys that must be refused)."""
    top = draw(st.dictionaries(st.sampled_from(sorted(TOP_LEVEL)), st.just(None), max_size=2))
    hyper = draw(
        st.dictionaries(st.sampled_from(sorted(HYPERPARAMETERS)), st.just(None), max_size=3)
    )
    lines = ["env: bpl/LineDraw-v0", "learner: bp_lambda", "env_kwargs: {sequence_length: 3}"]
    meanings, hyper_meanings, invalid = {}, {}, []
    for key in top:
        text, meaning = draw(st.sampled_from(TOP_LEVEL[key]), label=key)
        lines.append(f"{key}: {text}")
        (invalid.append(key) if meaning is INVALID else meanings.__setitem__(key, meaning))
    if "updates" not in top:
        lines.append("updates: 1")
    unknown = draw(st.sampled_from([None, "updatez", "lamda", "hidden-size"]), label="unknown")
    if unknown in ("updatez",):
        lines.append(f"{unknown}: 1")
        invalid.append(unknown)
    lines.append("hyperparameters:")
    lines.append("  hidden_size: 2" if "hidden_size" not in hyper else "  # hidden_size below")
    for key in hyper:
        text, meaning = draw(st.sampled_from(HYPERPARAMETERS[key]), label=key)
        lines.append(f"  {key}: {text}")
        (invalid.append(key) if meaning is INVALID else hyper_meanings.__setitem__(key, meaning))
    if unknown == "lamda":
        lines.append("  lamda: 0.5")
        invalid.append("lamda")
    if unknown == "hidden-size" and "hidden_size" not in hyper:
        lines[-len(hyper) - 1] = "  hidden-size: 2"  # dashes read as underscores
    return "\n".join(lines) + "\n", meanings, hyper_meanings, invalid


@given(config_files())
def test_config_values_mean_what_they_spell_or_are_refused_naming_the_key(config_file):
    text, meanings, hyper_meanings, invalid = config_file
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "run.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            config, _ = RunConfig.from_file(str(path))
            learner = build_learner(config)
        except (TypeError, ValueError) as error:
            event("refused")
            assert invalid, f"valid config refused: {error!r}\n{text}"
            assert names_argument(error, invalid), f"{error!r} names none of {invalid}\n{text}"
            return
    event("accepted")
    assert not invalid, f"accepted; {invalid} must be refused\n{text}"
    for key, meaning in meanings.items():
        assert getattr(config, key) == meaning and type(getattr(config, key)) is type(meaning)
    stored = learner._hyperparameters()
    for key, meaning in hyper_meanings.items():
        assert stored[key] == meaning and type(stored[key]) is type(meaning), (key, stored[key])


@pytest.mark.parametrize(
    ("text", "meaning"),
    [
        ("1e-4", 1e-4),  # PyYAML alone: the string '1e-4'
        ("1E+3", 1000.0),
        (".5", 0.5),
        ("-.inf", -math.inf),
        ("010", 10),  # PyYAML alone: 8 (octal)
        ("0o10", 8),
        ("0x10", 16),
        ("1_000", 1000),
        ("1:30", "1:30"),  # PyYAML alone: 90 (sexagesimal)
        ("yes", True),
        ("~", None),
        ("'1e-4'", "1e-4"),  # quoted: text
    ],
)
def test_numbers_follow_yaml_1_2_not_pyyaml_1_1(text, meaning):
    value = read_yaml(f"key: {text}")["key"]
    assert value == meaning and type(value) is type(meaning)


# ------------------------------------------------- regressions: what hypothesis found, kept


def test_regression_yaml_1_1_numbers_in_an_experiment_section_are_numbers(tmp_path):
    path = tmp_path / "preset.yaml"
    path.write_text("experiment:\n  lrs: [1e-4, 3e-4]\n  size: 010\n  time: 1:30\n")
    settings = load_config(path)["experiment"]
    # were: ['1e-4', '3e-4'] (strings, which no consumer converts inside a list), 8 and 90
    assert settings == {"lrs": [1e-4, 3e-4], "size": 10, "time": "1:30"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        # YAML 1.2 reads 1e3 as a float, and a float is not an int here (as 1000.0 is not)
        ("updates: 1e3", r"updates must be an int >= 1, got 1000\.0 \(write it as 1000\)"),
        ("num_envs: 1:30", r"num_envs must be an int >= 1, got '1:30'"),  # was: 90 (YAML 1.1)
    ],
)
def test_regression_a_float_or_sexagesimal_where_an_int_goes_is_refused(tmp_path, line, message):
    path = tmp_path / "run.yaml"
    path.write_text(
        f"env: bpl/LineDraw-v0\nlearner: bp_lambda\n{line}\n"
        + "updates: 1\n" * (not line.startswith("updates"))
    )
    with pytest.raises(ValueError, match=message):
        RunConfig.from_file(str(path))


def test_regression_leading_zeros_and_sexagesimal_hyperparameters(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "env: bpl/LineDraw-v0\nlearner: bp_lambda\nupdates: 1\n"
        "hyperparameters: {hidden_size: 010, synth_hidden: 1:30}\n"
    )
    config, _ = RunConfig.from_file(str(path))
    # were: hidden_size 8 (octal) and synth_hidden 90 (base 60), both accepted silently
    assert config.hyperparameters == {"hidden_size": 10, "synth_hidden": "1:30"}
    with pytest.raises(ValueError, match=r"'synth_hidden' .* expects int \| None, got '1:30'"):
        build_learner(config)


def test_a_refused_config_is_a_usage_error_of_bpl_train_naming_the_key(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(
        "env: bpl/LineDraw-v0\nlearner: bp_lambda\nupdates: 1\nhyperparameters:\n  lam: yes\n"
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--config", str(path), "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert "hyper-parameter 'lam' of learner 'bp_lambda' expects float, got True" in err
    assert not (tmp_path / "run").exists()
