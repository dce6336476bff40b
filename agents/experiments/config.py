"""YAML configuration files: the packaged presets and the user's own files.

A config is a YAML mapping read by :func:`read_yaml` (PyYAML's safe loader: no arbitrary
objects). The packaged presets live in ``agents/configs/`` and are referred to by name
(``toy``, ``toy_quick``, ``copy_repeat``, ...); anything else is a path to a ``.yaml`` file.

Numbers follow YAML 1.2 (:func:`read_yaml`), not PyYAML's YAML 1.1: ``1e-4``, ``1E+3`` and
``.5`` are floats (YAML 1.1 reads ``1e-4`` as a string), ``010`` is ten (YAML 1.1: octal
eight), ``0o10`` is eight, ``0x10`` sixteen, ``1_000`` a thousand (as in Python) and ``1:30`` is
text (YAML 1.1: the sexagesimal number 90). Booleans are ``true``/``false`` (and YAML 1.1's
``yes``/``no``/``on``/``off``), ``null`` or ``~`` is None. Each value must then have the type
its consumer expects, where a string that spells a value of that type counts as one (the
command line gives every value as text; see
:func:`agents.experiments.hyperparameters.convert`): a value of another type is refused with
an error naming its key.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

__all__ = ["CONFIG_DIR", "check_keys", "load_config", "preset_names", "read_yaml"]

_INT_TAG, _FLOAT_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"


class _Yaml12NumbersLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no arbitrary objects) with YAML 1.2's rules for numbers."""


_Yaml12NumbersLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12NumbersLoader.add_implicit_resolver(
    _INT_TAG,
    re.compile(r"^(?:[-+]?[0-9][0-9_]*|0o[0-7_]+|0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_Yaml12NumbersLoader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9][0-9_]*|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """A YAML 1.2 int: decimal (leading zeros included), ``0o`` octal or ``0x`` hexadecimal."""
    text = str(loader.construct_scalar(node)).replace("_", "")
    digits = text.lstrip("+-")
    sign = -1 if text.startswith("-") else 1
    return sign * int(digits, 0 if digits.startswith(("0o", "0x")) else 10)


_Yaml12NumbersLoader.add_constructor(_INT_TAG, _construct_int)


def read_yaml(text: str) -> Any:
    """Parse YAML text safely (no arbitrary objects), with YAML 1.2's rules for numbers.

    ``1e-4`` is the float 1e-4 (PyYAML alone reads it as a string), ``010`` is ten, ``0o10``
    eight, ``0x10`` sixteen, ``1_000`` a thousand; ``1:30`` is text.

    Raises:
        yaml.YAMLError: the text is not valid YAML.
    """
    return yaml.load(text, Loader=_Yaml12NumbersLoader)  # noqa: S506 (a SafeLoader subclass)


CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / "configs"
"""The folder of the packaged presets (shipped with the wheel)."""


def preset_names() -> list[str]:
    """Names of the packaged presets (file names without ``.yaml``)."""
    return sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))


def load_config(name_or_path: str | pathlib.Path) -> dict[str, Any]:
    """Read a config: the name of a packaged preset or the path of a YAML file.

    Raises:
        FileNotFoundError: neither a preset nor an existing file; lists the presets.
        ValueError: the file is not valid YAML or does not hold a mapping.
    """
    text = str(name_or_path)
    path = pathlib.Path(text).expanduser()
    if not path.is_file():
        preset = CONFIG_DIR / f"{text}.yaml"
        if pathlib.Path(text).name != text or not preset.is_file():
            raise FileNotFoundError(
                f"config {text!r} is neither a file nor a packaged preset; presets: "
                f"{preset_names()}"
            )
        path = preset
    try:
        data = read_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a YAML mapping (key: value lines), got {data!r}")
    return data


def check_keys(
    where: str, config: Mapping[str, Any], allowed: Iterable[str], required: Iterable[str] = ()
) -> None:
    """Refuse unknown and missing keys, naming them and the valid ones.

    Raises:
        ValueError: naming ``where`` (e.g. the file), the offending keys and the allowed keys.
    """
    allowed = sorted(allowed)
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid keys: {allowed}")
    missing = sorted(set(required) - set(config))
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}")
