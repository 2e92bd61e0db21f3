"""Extras by what is imported: every package augserve imports is declared, the server's extra holds what the
server and its engine import (the image installs that), and the anchors and plots live in their own extras."""

from __future__ import annotations

import ast
import importlib.metadata
import pathlib
import re
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "augserve"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
NOT_INSTALLED_HERE = {"jax": "jax", "nvidia": "nvidia-dali-cuda130", "tsaug": "tsaug", "nlpaug": "nlpaug"}  # module -> distribution
# The bench's SpecAugment anchor, measured when present: no torchaudio release matches the pinned torch, so no
# extra can install it beside the server's.
UNDECLARABLE = {"torchaudio"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _name(requirement: str) -> str:
    return _normal(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0])


def _extra(name: str, seen: frozenset = frozenset()) -> set[str]:
    """An extra's distributions, with the extras of augserve it includes."""
    found = set()
    for requirement in PROJECT["optional-dependencies"][name]:
        if _name(requirement) == "augserve":
            for included in re.search(r"\[(.*)\]", requirement).group(1).split(","):
                if included not in seen:
                    found |= _extra(included.strip(), seen | {name})
        else:
            found.add(_name(requirement))
    return found


BASE = {_name(r) for r in PROJECT["dependencies"]}
DISTRIBUTIONS = {module: {_normal(d) for d in dists} for module, dists in importlib.metadata.packages_distributions().items()}


def _third_party(path: pathlib.Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module.split(".")[0])
    return {m for m in modules if m != "augserve" and m not in sys.stdlib_module_names and m != "__future__"}


def _distribution(module: str) -> str:
    if module in NOT_INSTALLED_HERE:
        return NOT_INSTALLED_HERE[module]
    candidates = DISTRIBUTIONS.get(module)
    assert candidates, f"{module}: imported by augserve but installed by no distribution here"
    return sorted(candidates)[0]


def _imports_of(*parts: str) -> dict[str, str]:
    """distribution -> one file importing it, over the files of augserve's ``parts`` (all when none)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).parts
        if parts and relative[0].removesuffix(".py") not in parts:
            continue
        for module in _third_party(path) - UNDECLARABLE:
            found.setdefault(_distribution(module), str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_declared():
    declared = BASE | {d for extra in PROJECT["optional-dependencies"] for d in _extra(extra)}
    undeclared = {d: where for d, where in _imports_of().items() if d not in declared}
    assert not undeclared, f"imported but in no dependency list: {undeclared}"


ENGINE_AND_SERVER = ("server", "pipeline", "ops", "steps", "encoded", "presets", "timm_strings", "random", "labels",
                     "modality", "spec", "runtime", "normalize", "wire", "shared_memory", "side_streams", "photos",
                     "transport", "v1", "text")


def test_the_server_extra_holds_what_the_server_imports_and_no_more():
    # sktime: the built-in GunPoint set; transformers: contextual_substitution's models; each refused when absent
    allowed = BASE | _extra("server") | _extra("data") | _extra("text-lm")
    used = _imports_of(*ENGINE_AND_SERVER)
    assert not {d: where for d, where in used.items() if d not in allowed}, "the server imports outside its extra"
    unused = _extra("server") - set(used) - BASE
    assert not unused, f"the server extra installs what the server never imports: {unused}"


@pytest.mark.parametrize("part, extra", [("trainer", "trainer"), ("experiments", "trainer"), ("tools", "bench"),
                                         ("client", "torch")])
def test_each_part_imports_only_what_its_extras_install(part, extra):
    allowed = BASE | _extra(extra) | _extra("server") | _extra("data") | _extra("plots") | _extra("jax")
    if part == "client":
        allowed = BASE | _extra("torch") | _extra("jax")
    outside = {d: where for d, where in _imports_of(part).items() if d not in allowed}
    assert not outside, outside


def test_the_plotting_and_the_anchors_are_not_in_the_server_extra():
    assert not {"matplotlib", "kornia", "timm", "tsaug", "nvidia-dali-cuda130"} & _extra("server")
