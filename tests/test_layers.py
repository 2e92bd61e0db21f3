"""The tools stand around the engine: nothing in the engine, server or client imports augserve.tools
(only the command line does, lazily), and the bench's modules import its harness, never each other
back into a circle."""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "augserve"


def _imports(path: pathlib.Path) -> set[str]:
    """Every augserve module a file imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("augserve"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("augserve"))
    return found


def _module(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(path): _imports(path) for path in PACKAGE.rglob("*.py")}


def test_nothing_below_the_command_line_imports_the_tools():
    users = sorted(module for module, imported in MODULES.items()
                   if not module.startswith("augserve.tools") and module != "augserve.cli"
                   and any(name.startswith("augserve.tools") for name in imported))
    assert not users, f"{users} import augserve.tools"


def test_the_bench_modules_form_no_circle():
    bench = {module: {name for name in imported if name in MODULES and name.startswith("augserve.tools.bench")}
             for module, imported in MODULES.items() if module.startswith("augserve.tools.bench")}
    assert not bench["augserve.tools.bench.harness"], "the harness imports the cases it serves"

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        return any(step == target or (step not in seen and reaches(step, target, seen | {step}))
                   for step in bench.get(start, ()))

    circles = sorted(module for module in bench if reaches(module, module, {module}))
    assert not circles, f"import circles through {circles}"
