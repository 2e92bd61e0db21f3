"""The op reference, generated from the registered steps and their fields' docs.

``augserve pipelines --ops`` prints it; docs/pipelines.md shows it, and a test keeps the two equal.
"""

from __future__ import annotations

from typing import Any

from augserve.modality import Modality
from augserve.spec import Choice, Field
from augserve.steps.base import STEPS, Step


def _value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _field(name: str, field: Field) -> str:
    default = "required" if field.required else _value(field.default)
    notes = [field.doc] if field.doc else []
    if isinstance(field, Choice):
        notes.append("one of " + ", ".join(field.options))
    return f"`{name}` [{default}]" + (": " + "; ".join(notes) if notes else "")


def _summary(step: type[Step]) -> str:
    return " ".join((step.__doc__ or "").strip().split("\n\n")[0].split())


def _works_on(step: type[Step]) -> str:
    kinds = ", ".join(step.modalities)
    return f"{kinds} -> {step.produces}" if step.produces else kinds


def _strength(step: type[Step]) -> str:
    """What ``strength`` moves, and towards what."""
    scaled = [f"`{name}` → {_value(field.neutral)}{' (geometric)' if field.geometric else ''}"
              for name, field in step.fields.items() if field.neutral is not None]
    if step.also_scales:
        scaled.append(step.also_scales)
    if scaled:
        return ", ".join(scaled)
    return "nothing (deterministic)" if step.draws_nothing else "refused (strength 1 only)"


def op_table() -> str:
    """A Markdown table of every registered op: what it works on, what it does, its fields with defaults,
    and what ``strength`` scales."""
    order = list(Modality)
    steps = sorted(STEPS.values(), key=lambda step: order.index(step.modalities[0]))
    rows = ["| op | works on | what it does | fields [default] | strength scales |", "|---|---|---|---|---|"]
    for step in steps:
        fields = "; ".join(_field(name, field) for name, field in step.fields.items()) or "none"
        rows.append(f"| `{step.op}` | {_works_on(step)} | {_summary(step)} | {fields} | {_strength(step)} |"
                    .replace("\n", " "))
    return "\n".join(rows)
