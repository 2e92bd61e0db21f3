"""Typed fields for pipeline steps: every value checked, every error names its place.

A step declares its fields; ``parse_fields`` fills defaults, rejects unknown
names, and raises ``SpecError`` with the step, the field, the value and what
was expected.
"""

from __future__ import annotations

import difflib
import math
import re
import reprlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

MAX_IMAGE_SIDE = 8192


def is_spec_text(text: str) -> bool:
    """Inline JSON or YAML steps, as opposed to a preset or timm name."""
    return text.lstrip()[:1] in ("[", "{") or "\n" in text


class SpecError(ValueError):
    """A pipeline spec that cannot be compiled; the message names step, field, value and range."""


SHOWN_CHARS = 200
_SHORT = reprlib.Repr()  # bounded at every level, so even a huge value costs a few hundred characters to show
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 3, 80, 80
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 6


def shown(value: Any) -> str:
    """A client's value as an error message quotes it: its repr, at most ``SHOWN_CHARS`` characters."""
    return clipped(_SHORT.repr(value))


def clipped(text: str) -> str:
    """Text that may hold a client's value (a parser's message), at most ``SHOWN_CHARS`` characters."""
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 3] + "..."


def did_you_mean(given: Any, names: Any) -> str:
    """"; did you mean 'x'?" for a name one typo away from one of ``names`` (case aside), else "": a
    mistyped op or field is named in the message that lists them all, where it is easy to miss."""
    if not isinstance(given, str) or not given:
        return ""
    by_lower = {str(name).lower(): str(name) for name in names if isinstance(name, str)}
    close = difflib.get_close_matches(given.lower()[:SHOWN_CHARS], list(by_lower), n=1)
    return f"; did you mean {by_lower[close[0]]!r}?" if close else ""


_REQUIRED = object()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Field(ABC):
    default: Any = _REQUIRED
    doc: str = ""
    neutral: Any = None  # the value at which the step does nothing: strength scales the field towards it
    geometric: bool = False  # a ratio (speed, zoom, aspect): strength scales its logarithm

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def at_strength(self, value: Any, strength: float) -> Any:
        """``value`` moved towards ``neutral``: neutral + strength * (value - neutral) (for a geometric
        field neutral * (value / neutral) ** strength), each number of it, rounded for integer fields
        and clamped to the field's range; unchanged without a neutral."""
        if self.neutral is None or value is None or isinstance(value, str):
            return value
        bounds = (getattr(self, "low", -math.inf), getattr(self, "high", math.inf))
        integer = getattr(self, "integer", False)

        def scale(number: float) -> float:
            if strength == 0:
                moved = self.neutral
            elif self.geometric:
                moved = self.neutral * (number / self.neutral) ** strength
            else:
                moved = self.neutral + strength * (number - self.neutral)
            moved = min(max(moved, bounds[0]), bounds[1])
            return math.floor(moved + 0.5) if integer else moved

        return tuple(scale(v) for v in value) if isinstance(value, tuple) else scale(value)

    @abstractmethod
    def expected(self) -> str:
        """What a valid value looks like, for error messages."""

    @abstractmethod
    def convert(self, value: Any) -> Any:
        """Return the checked value, or raise ValueError (turned into SpecError by the caller)."""


@dataclass(frozen=True)
class Number(Field):
    low: float = -math.inf
    high: float = math.inf
    integer: bool = False
    allow_inf: bool = False
    exclusive_low: bool = False
    exclusive_high: bool = False

    def expected(self) -> str:
        kind = "an integer" if self.integer else "a number"
        return f"{kind} in {'(' if self.exclusive_low else '['}{self.low:g}, {self.high:g}{')' if self.exclusive_high else ']'}"

    def convert(self, value: Any) -> Any:
        if isinstance(value, str) and self.allow_inf and value.lower() in ("inf", "infinity"):
            value = math.inf
        if not _is_number(value) or (self.integer and not float(value).is_integer()):
            raise ValueError
        if math.isnan(value) or (math.isinf(value) and not self.allow_inf):
            raise ValueError
        if not self.low <= value <= self.high:
            raise ValueError
        if (self.exclusive_low and value == self.low) or (self.exclusive_high and value == self.high):
            raise ValueError
        return int(value) if self.integer else float(value)


@dataclass(frozen=True)
class Flag(Field):
    def expected(self) -> str:
        return "true or false"

    def convert(self, value: Any) -> Any:
        if not isinstance(value, bool):
            raise ValueError
        return value


@dataclass(frozen=True)
class Interval(Field):
    """A (min, max) pair inside [low, high]; a single number ``v`` means ``symmetric(v)``."""

    low: float = -math.inf
    high: float = math.inf
    symmetric: str | None = None  # "plus_minus": (-v, v); "around_one": (max(0, 1-v), 1+v); "point": (v, v)

    def expected(self) -> str:
        single = {"plus_minus": "a number v >= 0 meaning (-v, v), or ",
                  "around_one": "a number v >= 0 meaning (max(0, 1-v), 1+v), or ",
                  "point": "a number, or "}.get(self.symmetric or "", "")
        return f"{single}a pair [min, max] with {self.low:g} <= min <= max <= {self.high:g}"

    def convert(self, value: Any) -> Any:
        if _is_number(value) and self.symmetric:
            if not math.isfinite(value) or value < 0:
                raise ValueError
            value = {"plus_minus": (-value, value), "around_one": (max(0.0, 1.0 - value), 1.0 + value),
                     "point": (value, value)}[self.symmetric]
        if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(_is_number(v) for v in value):
            raise ValueError
        lo, hi = float(value[0]), float(value[1])
        if not (math.isfinite(lo) and math.isfinite(hi) and self.low <= lo <= hi <= self.high):
            raise ValueError
        return (lo, hi)


@dataclass(frozen=True)
class Size(Field):
    """An output size: one int (square) or [height, width], each in [1, MAX_IMAGE_SIDE]."""

    def expected(self) -> str:
        return f"an integer or [height, width], each in [1, {MAX_IMAGE_SIDE}]"

    def convert(self, value: Any) -> Any:
        if isinstance(value, (list, tuple)) and len(value) == 2:
            pair = value
        elif _is_number(value):
            pair = (value, value)
        else:
            raise ValueError
        if not all(_is_number(v) and float(v).is_integer() and 1 <= v <= MAX_IMAGE_SIDE for v in pair):
            raise ValueError
        return (int(pair[0]), int(pair[1]))


@dataclass(frozen=True)
class Choice(Field):
    options: tuple[str, ...] = ()

    def expected(self) -> str:
        return "one of " + ", ".join(repr(o) for o in self.options)

    def convert(self, value: Any) -> Any:
        if value not in self.options:
            raise ValueError
        return value


@dataclass(frozen=True)
class Name(Field):
    """A name given to something the step reads (a sound set): letters, digits, '_', '-' and '.', 1 to 64."""

    def expected(self) -> str:
        return "a name of 1 to 64 letters, digits, '_', '-' or '.'"

    def convert(self, value: Any) -> Any:
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
            raise ValueError
        return value


@dataclass(frozen=True)
class Numbers(Field):
    """A number or a list of numbers (one per channel), each in [low, high]."""

    low: float = -math.inf
    high: float = math.inf
    exclusive_low: bool = False

    def expected(self) -> str:
        bracket = "(" if self.exclusive_low else "["
        return f"a number or a list of 1 to 4 numbers, each in {bracket}{self.low:g}, {self.high:g}]"

    def convert(self, value: Any) -> Any:
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if not 1 <= len(values) <= 4 or not all(_is_number(v) and math.isfinite(v) for v in values):
            raise ValueError
        if not all((v > self.low if self.exclusive_low else v >= self.low) and v <= self.high for v in values):
            raise ValueError
        return tuple(float(v) for v in values)


MAX_COLUMNS = 4096  # the most values a per-column field holds (tables up to this many columns take them)


@dataclass(frozen=True)
class ColumnValues(Field):
    """One number per column of a table (a std, a mean): 1 to ``MAX_COLUMNS`` finite numbers in [low, high],
    float32's range by default (tables run as float32: a larger value would turn a column into infinities)."""

    low: float = -3.0e38
    high: float = 3.0e38

    def expected(self) -> str:
        return f"a list of 1 to {MAX_COLUMNS} numbers (one per column), each in [{self.low:g}, {self.high:g}]"

    def convert(self, value: Any) -> Any:
        if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_COLUMNS:
            raise ValueError
        if not all(_is_number(v) and math.isfinite(v) and self.low <= v <= self.high for v in value):
            raise ValueError
        return tuple(float(v) for v in value)


@dataclass(frozen=True)
class Columns(Field):
    """Column indices of a table: a list of 0 to ``MAX_COLUMNS`` integers >= 0, kept sorted and once each."""

    def expected(self) -> str:
        return f"a list of up to {MAX_COLUMNS} column indices (integers >= 0)"

    def convert(self, value: Any) -> Any:
        if not isinstance(value, (list, tuple)) or len(value) > MAX_COLUMNS:
            raise ValueError
        if not all(_is_number(v) and float(v).is_integer() and 0 <= v < 1 << 31 for v in value):
            raise ValueError
        return tuple(sorted({int(v) for v in value}))


@dataclass(frozen=True)
class NumbersOr(Field):
    """Numbers (one per channel), or one named value such as 'random' or 'img_mean'."""

    word: str = ""

    def expected(self) -> str:
        return f"a number, a list of per-channel numbers, or {self.word!r}"

    def convert(self, value: Any) -> Any:
        return self.word if value == self.word else Numbers().convert(value)


def check_field(where: str, name: str, field: Field, value: Any) -> Any:
    try:
        return field.convert(value)
    except (ValueError, TypeError, OverflowError):
        hint = did_you_mean(value, field.options) if isinstance(field, Choice) else ""
        raise SpecError(f"{where}: field '{name}': expected {field.expected()}, got {shown(value)}{hint}") from None


def parse_fields(where: str, fields: dict[str, Field], given: dict[str, Any]) -> dict[str, Any]:
    """Check ``given`` against ``fields``; fill defaults; reject unknown names."""
    unknown = sorted(set(given) - set(fields))
    if unknown:
        allowed = ", ".join(sorted(fields)) or "none"
        raise SpecError(f"{where}: unknown field {shown(unknown[0])}{did_you_mean(unknown[0], fields)} "
                        f"(allowed: {allowed})")
    values = {}
    for name, field in fields.items():
        if name in given and given[name] is not None:
            values[name] = check_field(where, name, field, given[name])
        elif field.required:
            raise SpecError(f"{where}: field '{name}' is required: expected {field.expected()}")
        elif field.default is None:
            values[name] = None
        else:
            values[name] = field.convert(field.default)  # defaults take the canonical form too
    return values

