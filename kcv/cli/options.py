"""Parsing helpers shared by the commands."""

from __future__ import annotations

from kcv.errors import KcvError


def parse_model_args(pairs) -> dict:
    """``("base_filters=16", "upsampling=bilinear")`` → ``{"base_filters": 16, ...}``.

    Values are parsed as YAML scalars, so numbers, booleans and lists come out typed.
    """
    import yaml

    out = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise KcvError(f"--model-arg '{pair}': expected KEY=VALUE, e.g. base_filters=16")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = value
    return out
