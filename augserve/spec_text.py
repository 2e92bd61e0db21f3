"""Spec text (JSON or YAML) parsed within limits checked while parsing, so no spec costs more than its size.

A spec is small: the presets have a dozen steps. What a client sends is bounded before the parse (its
length), during it (nesting depth; YAML aliases, whose expansion is unbounded, are refused) and after it
(the number of steps, in ``pipeline.compile_steps``).
"""

from __future__ import annotations

from typing import Any

import yaml

from augserve.spec import SpecError, clipped

MAX_SPEC_CHARS = 64 * 1024
MAX_DEPTH = 32  # lists and mappings inside each other; the deepest preset needs 4
MAX_STEPS = 256


class _BoundedLoader(yaml.SafeLoader):
    """YAML's safe loader with no aliases and a bounded depth, both refused as the parser meets them."""

    def __init__(self, text: str, where: str, source: str):
        super().__init__(text)
        self.name = source  # what YAML's error marks name: the file, or the request's field
        self.where = where
        self.depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise SpecError(f"{self.where}: line {mark.line + 1}: YAML aliases (*name) are not accepted in a "
                            "spec; write the value out")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise SpecError(f"{self.where}: line {mark.line + 1}: nested more than {MAX_DEPTH} levels deep, the "
                            "limit; a spec is a list of steps whose fields are numbers, names and short lists")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load(text: str, where: str = "pipeline", source: str = "the spec text") -> Any:
    """The data in spec text (from ``source``: a file's path, or the request), or ``SpecError`` naming the
    limit it passes or the parse error."""
    if len(text) > MAX_SPEC_CHARS:
        raise SpecError(f"{where}: spec text of {len(text)} characters; the limit is {MAX_SPEC_CHARS} "
                        f"(at most {MAX_STEPS} steps)")
    loader = _BoundedLoader(text, where, source)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as error:  # where the parser stopped, then what it was reading from where
        mark = error.problem_mark or error.context_mark
        at = "" if mark is None else f"line {mark.line + 1}, column {mark.column + 1}: "
        context = error.context_mark if error.context and error.problem_mark else None
        since = "" if context is None else \
            f" ({error.context} from line {context.line + 1}, column {context.column + 1})"
        raise SpecError(f"{where}: {at}not valid JSON or YAML: {clipped(f'{error.problem or error.context}{since}')}") \
            from None
    except (yaml.YAMLError, ValueError, OverflowError) as error:  # the latter from tags such as !!float xyz
        raise SpecError(f"{where}: not valid JSON or YAML: {clipped(str(error))}") from None
    finally:
        loader.dispose()
