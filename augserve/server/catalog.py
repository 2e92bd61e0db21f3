"""The pipelines a server offers by name: the presets plus those its config file names."""

from __future__ import annotations

from augserve.pipeline import Pipeline
from augserve.presets import PRESETS


def named_pipelines(declared: dict) -> dict[str, tuple[str, object]]:
    """Name -> (description, spec). Each declared spec is compiled once here, so a bad one stops start-up."""
    catalog: dict[str, tuple[str, object]] = dict(PRESETS)
    for name, entry in (declared or {}).items():
        if isinstance(entry, dict) and "steps" in entry:
            description = str(entry.get("description", ""))
            spec = {key: value for key, value in entry.items() if key != "description"}
        else:
            description, spec = "", entry
        try:
            catalog[name] = (description, Pipeline.from_spec(spec).to_spec())
        except ValueError as error:
            raise ValueError(f"pipelines.{name}: {error}") from None
    return catalog
