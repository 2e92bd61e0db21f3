"""The package's floors: every module imports only its own floor or those below it, nothing imports in a
circle, and nothing in the engine, server or client imports augserve.tools (only the command line does,
lazily). Imports inside functions count too: a lazy import is still an arrow."""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "augserve"


# Floors from the bottom: a module may import its own floor and those below. ``augserve`` itself (the
# package's front: version and re-exports of the engine) sits with the server.
FLOORS = [
    {"v1", "random", "modality", "spec", "spec_text", "grpc_fork", "runtime", "normalize", "transport", "labels",
     "shared_memory", "extras", "side_streams", "wire", "framing", "device_constants", "packing", "named",
     "sound_sets", "table_stats"},
    {"ops", "smote"},
    {"steps", "text"},
    {"timm_strings", "presets", "encoded", "device_plan"},
    {"pipeline"},
    {"photos", "client", "in_process"},
    {"server", "trainer", "augserve"},
    {"experiments"},
    {"tools"},
    {"cli"},
]


def _module(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


PATHS = {_module(path): path for path in PACKAGE.rglob("*.py")}


def _imports(path: pathlib.Path) -> set[str]:
    """Every augserve module a file imports, at any depth of the file (``from package import module`` names
    the module, not the package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("augserve"):
            modules = [f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in PATHS]
            if len(modules) < len(node.names):
                found.add(node.module)
            found.update(modules)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("augserve"))
    return found & set(PATHS)


MODULES = {module: _imports(path) for module, path in PATHS.items()}


def _floor(module: str) -> int:
    part = module.split(".")[1] if "." in module else "augserve"
    return next(i for i, floor in enumerate(FLOORS) if part in floor)


def test_every_module_is_on_a_floor_and_imports_none_above_it():
    upward = sorted(f"{module} -> {name}" for module, imported in MODULES.items() for name in imported
                    if _floor(name) > _floor(module))
    assert not upward, upward


def test_no_import_circle_anywhere_in_the_package():
    def reaches(start: str, target: str, seen: set[str]) -> bool:
        return any(step == target or (step not in seen and reaches(step, target, seen | {step}))
                   for step in MODULES[start])

    circles = sorted(module for module in MODULES if reaches(module, module, {module}))
    assert not circles, f"import circles through {circles}"


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


def test_no_module_imports_another_ones_private_names():
    privates = sorted(f"{module}: {node.module}.{alias.name}" for module, path in PATHS.items()
                      for node in ast.walk(ast.parse(path.read_text()))
                      if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("augserve")
                      for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__"))
    assert not privates, privates
