"""Augmentation policies: ``--augment flip,rotate=15,crop=0.8`` or a YAML file, parsed and checked.

A policy is an ordered list of :class:`Op` (name + parameters). Parsing never builds a
layer, so a bad policy is rejected before any data is loaded, with one line naming the bad
token. ``str(policy)`` is the canonical spelling that ``config.json`` records and that
``--resume`` parses back.

Operations (value after ``=`` optional; the default is shown):

=================  ===========  =========================================================
token              kind         effect
=================  ===========  =========================================================
``flip=h``         geometric    random flip: ``h`` horizontal, ``v`` vertical, ``hv`` both
``rotate=15``      geometric    rotation by a random angle in [-15°, 15°]
``rotate90``       geometric    rotation by a random multiple of 90° (exact, no fill)
``crop=0.8``       geometric    random crop of 80–100 % of the side, resized back
``shear=0.1``      geometric    random x and y shear in [-0.1, 0.1]
``translate=0.1``  geometric    random shift of up to 10 % of the side
``brightness=0.2`` photometric  brightness change of up to ±20 % of the value range
``contrast=0.2``   photometric  contrast change of up to ±20 %
``randaugment=2x9``mixed        RandAugment: 2 random ops at magnitude 9 (of 30)
``erasing=0.5``    photometric  random erasing of a patch with probability up to 0.5
``cutmix=1.0``     mixing       CutMix, Beta(1, 1) patch area; masks are pasted too
``mixup=0.2``      mixing       MixUp, Beta(0.2, 0.2) weights (classification only)
=================  ===========  =========================================================

``none`` (alone) means no augmentation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kcv.errors import KcvError

GEOMETRIC, PHOTOMETRIC, MIXING = "geometric", "photometric", "mixing"

# name -> (kind, default value, short help). Values are parsed by _parse_value.
OPS = {
    "flip": (GEOMETRIC, "h", "flip=h|v|hv"),
    "rotate": (GEOMETRIC, 15.0, "rotate=DEGREES (0-180)"),
    "rotate90": (GEOMETRIC, None, "rotate90 (no value)"),
    "crop": (GEOMETRIC, 0.8, "crop=MIN_SIDE_FRACTION (0-1]"),
    "shear": (GEOMETRIC, 0.1, "shear=FACTOR (0-1]"),
    "translate": (GEOMETRIC, 0.1, "translate=FRACTION (0-1]"),
    "brightness": (PHOTOMETRIC, 0.2, "brightness=FACTOR (0-1]"),
    "contrast": (PHOTOMETRIC, 0.2, "contrast=FACTOR (0-1]"),
    "randaugment": (GEOMETRIC, "2x9", "randaugment=NxM (N ops 1-10, magnitude M 0-30)"),
    "erasing": (PHOTOMETRIC, 0.5, "erasing=PROBABILITY (0-1]"),
    "cutmix": (MIXING, 1.0, "cutmix=ALPHA (>0)"),
    "mixup": (MIXING, 0.2, "mixup=ALPHA (>0)"),
}

# Measured on `kcv train --arch unet` (12 epochs, shapes): val mIoU none 0.808, flip 0.860 /
# 0.837 (seeds 0/1), flip,crop=0.8 0.828 / 0.778: cropping costs more than it gives in a
# short schedule for dense labels. Classification keeps the usual crop + flip.
DEFAULTS = {"classification": "flip,crop=0.8", "segmentation": "flip"}


@dataclass(frozen=True)
class Op:
    """One augmentation step: ``name`` from :data:`OPS` and its parsed ``value``."""

    name: str
    value: object = None

    @property
    def kind(self) -> str:
        return OPS[self.name][0]

    def __str__(self) -> str:
        if self.value is None or (self.name == "flip" and self.value == "h"):
            return self.name  # numbers stay explicit, so config.json reads without the table
        v = self.value
        if isinstance(v, tuple):  # randaugment (n, m)
            v = f"{v[0]}x{v[1]}"
        elif isinstance(v, float):
            v = f"{v:g}"
        return f"{self.name}={v}"


@dataclass(frozen=True)
class Policy:
    """An ordered list of :class:`Op`; empty means no augmentation."""

    ops: tuple = field(default_factory=tuple)

    def __str__(self) -> str:
        return ",".join(str(op) for op in self.ops) or "none"

    def __bool__(self) -> bool:
        return bool(self.ops)

    @property
    def mixing(self) -> bool:
        """True if the policy mixes samples (CutMix/MixUp): labels become soft."""
        return any(op.kind == MIXING for op in self.ops)


def default_policy(task: str) -> str:
    """The policy ``kcv train`` uses when ``--augment`` is not given."""
    return DEFAULTS[task]


def parse_policy(spec, task: str | None = None) -> Policy:
    """Parse ``--augment``: a policy string, ``none``, or the path of a YAML file.

    The YAML file holds a list of tokens or single-key mappings (``- rotate: 15``), or a
    mapping ``{flip: h, rotate: 15}``, optionally under a top-level ``augment:`` key.

    Raises:
        KcvError: one line naming the bad token (unknown op, bad value, an op not valid
            for ``task``, or a file that cannot be read).
    """
    if spec is None:
        raise KcvError("--augment: empty policy (use 'none' for no augmentation)")
    if isinstance(spec, Policy):
        return spec
    text = str(spec).strip()
    if text.lower().endswith((".yaml", ".yml")) or Path(text).is_file():
        tokens = _yaml_tokens(Path(text))
    else:
        tokens = [t.strip() for t in text.split(",")]
    if tokens == ["none"] or tokens == []:
        return Policy(())
    ops = []
    for token in tokens:
        op = _parse_token(token)
        if task == "segmentation" and op.name == "mixup":
            raise KcvError("--augment 'mixup': classification only (mixed masks are not "
                           "labels); use cutmix for segmentation")
        if op.name in {o.name for o in ops}:
            raise KcvError(f"--augment '{token}': {op.name} appears twice")
        ops.append(op)
    return Policy(tuple(ops))


def _yaml_tokens(path: Path) -> list[str]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise KcvError(f"--augment {path}: file not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise KcvError(f"--augment {path}: not a readable YAML file ({type(e).__name__})") from None
    if isinstance(data, dict) and set(data) == {"augment"}:
        data = data["augment"]
    if data is None or data == "none":
        return ["none"]
    items = data.items() if isinstance(data, dict) else data if isinstance(data, list) else None
    if items is None:
        raise KcvError(f"--augment {path}: expected a list of ops or a mapping op: value")
    tokens = []
    for item in items:
        if isinstance(item, dict) and len(item) == 1:
            item = next(iter(item.items()))
        if isinstance(item, tuple):
            name, value = item
            tokens.append(str(name) if value in (None, True) else f"{name}={value}")
        elif isinstance(item, str):
            tokens.append(item)
        else:
            raise KcvError(f"--augment {path}: bad entry {item!r} (expected 'op' or 'op: value')")
    return tokens


def _parse_token(token: str) -> Op:
    name, sep, raw = token.partition("=")
    name, raw = name.strip().lower(), raw.strip()
    if name not in OPS:
        close = [n for n in OPS if n.startswith(name[:3])] if name else []
        hint = f" (did you mean {', '.join(close)}?)" if close else f" (choose from {', '.join(OPS)}, none)"
        raise KcvError(f"--augment '{token}': unknown augmentation '{name}'{hint}")
    kind, default, usage = OPS[name]
    if not sep:
        return Op(name, default)
    if default is None:
        raise KcvError(f"--augment '{token}': {name} takes no value")
    try:
        value = _parse_value(name, raw)
    except ValueError:
        raise KcvError(f"--augment '{token}': bad value, expected {usage}") from None
    return Op(name, value)


def _parse_value(name: str, raw: str):
    """Parse and range-check one value; ``ValueError`` if it is out of range."""
    if name == "flip":
        if raw not in ("h", "v", "hv"):
            raise ValueError(raw)
        return raw
    if name == "randaugment":
        m = re.fullmatch(r"(\d+)x(\d+(?:\.\d+)?)", raw)
        if not m or not 1 <= int(m.group(1)) <= 10 or not 0 <= float(m.group(2)) <= 30:
            raise ValueError(raw)
        mag = float(m.group(2))
        return int(m.group(1)), int(mag) if mag.is_integer() else mag
    v = float(raw)
    limits = {"rotate": (0, 180), "cutmix": (0, 100), "mixup": (0, 100)}
    lo, hi = limits.get(name, (0, 1))
    if not lo < v <= hi:
        raise ValueError(raw)
    return v
