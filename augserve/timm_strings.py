"""timm's augmentation strings -> steps that mean what timm means by them.

``rand-m9-mstd0.5-inc1`` (``rand_augment_transform``), ``augmix-m5-w4-d2`` (``augment_and_mix_transform``)
and ``original-mstd0.5`` / ``originalr`` / ``v0`` / ``v0r`` / ``3a`` (``auto_augment_transform``). Sections
are read as timm reads them (a key, then a number from the first digit; a repeated ``mstd``, ``mmax`` or ``t``
keeps its first value, any other its last); what timm would reject, or silently skip (a section without a
number such as ``mstdinf``, an unknown ``t`` set), is refused here with the reason.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from augserve.ops.timm_policies import AUTO_AUGMENT_POLICIES, RAND_CHOICES
from augserve.spec import SpecError, shown

AUTO_AUGMENT_NAMES = tuple(AUTO_AUGMENT_POLICIES)


def _integer(text: str) -> int:
    return int(text)


def _flag(text: str) -> bool:
    return bool(int(text))


def _mstd_rand(text: str) -> float:
    value = float(text)
    return float("inf") if value > 100 else value  # timm: mstd above 100 means uniform in [0, m]


# per string kind: section key -> (step field, parse)
_RAND_KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "m": ("m", _integer), "n": ("n", _integer), "p": ("p", float), "mstd": ("mstd", _mstd_rand),
    "mmax": ("mmax", _integer), "inc": ("inc", _flag),
}
_AUGMIX_KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "m": ("m", _integer), "w": ("w", _integer), "d": ("d", _integer), "a": ("a", float), "b": ("b", _flag),
    "mstd": ("mstd", float),
}
_AUTO_KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {"mstd": ("mstd", float)}
FIRST_WINS = ("mstd", "mmax")  # timm puts these in hparams with setdefault: a repeated section keeps the first value


def is_timm_string(text: str) -> bool:
    head = text.split("-")[0]
    return head in ("rand", "augmix") or head in AUTO_AUGMENT_NAMES


def parse(text: str) -> list[dict[str, Any]]:
    """A timm augmentation string -> one step dict (SpecError naming the section otherwise)."""
    head, *sections = text.split("-")
    if head == "rand":
        step: dict[str, Any] = {"op": "timm_rand_augment"}
        keys = _RAND_KEYS
    elif head == "augmix":
        step, keys = {"op": "timm_augmix"}, _AUGMIX_KEYS
    else:
        step, keys = {"op": "timm_auto_augment", "policy": head}, _AUTO_KEYS
    for section in sections:
        if head == "rand" and section.startswith("t"):
            if section[1:] not in RAND_CHOICES or section[1:] == "default":
                raise SpecError(f"pipeline {shown(text)}: section {shown(section)}: "
                                f"unknown op set {shown(section[1:])} "
                                f"(timm's: {', '.join(c for c in RAND_CHOICES if c != 'default')})")
            step.setdefault("transforms", section[1:])  # timm keeps the first op set named
            continue
        key, number = (re.split(r"(\d.*)", section) + [""])[:2]
        if key not in keys or not number:
            raise SpecError(f"pipeline {shown(text)}: section {shown(section)}: expected one of "
                            f"{', '.join(k + 'N' for k in keys)}{', tNAME' if head == 'rand' else ''} "
                            f"(as in {_EXAMPLES[head if head in _EXAMPLES else 'auto']})")
        field, convert = keys[key]
        try:
            value = convert(number)
            if field in FIRST_WINS:
                step.setdefault(field, value)
            else:
                step[field] = value
        except ValueError:
            raise SpecError(f"pipeline {shown(text)}: section {shown(section)}: {shown(number)} is not "
                            f"{'a whole number' if convert in (_integer, _flag) else 'a number'}") from None
    return [step]


_EXAMPLES = {"rand": "rand-m9-mstd0.5-inc1", "augmix": "augmix-m5-w4-d2", "auto": "original-mstd0.5"}
