"""YAML configuration files: the packaged presets and the user's own files.

A config is a YAML mapping read with ``yaml.safe_load`` (no arbitrary objects). The packaged
presets live in ``agents/configs/`` and are referred to by name (``toy``, ``toy_quick``,
``copy_repeat``, ...); anything else is a path to a ``.yaml`` file.

YAML 1.1 (PyYAML) reads ``1e-4`` as a string and only ``1.0e-4`` as a number; the values of a
config are therefore converted to the type the consumer expects (see
:func:`agents.experiments.hyperparameters.convert`), so both spellings work.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

__all__ = ["CONFIG_DIR", "check_keys", "load_config", "preset_names"]

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
        data = yaml.safe_load(path.read_text())
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
