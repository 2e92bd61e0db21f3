"""The documentation people walk: the README is the front door, and the reference in docs/ builds strictly
(a broken link or anchor fails), as ``make docs`` builds it."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _build(config: pathlib.Path, site: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config),
                           "--site-dir", str(site)], capture_output=True, text=True, timeout=300)


def test_the_docs_build_strictly(tmp_path):
    result = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr
    pages = {path.name for path in (ROOT / "docs").glob("*.md")}
    assert {"index.md", "pipelines.md", "serving.md", "client.md", "trainer.md", "deploy.md", "failures.md",
            "performance.md"} <= pages
    assert all((tmp_path / "site" / name.removesuffix(".md") / "index.html").exists()
               for name in pages if name != "index.md")


def test_a_broken_link_or_anchor_fails_the_build(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    config = tmp_path / "mkdocs.yml"
    config.write_text((ROOT / "mkdocs.yml").read_text().replace("docs_dir: docs", f"docs_dir: {docs}"))
    with (docs / "cli.md").open("a") as page:
        page.write("\nSee [the ops](pipelines.md#no-such-section).\n")
    result = _build(config, tmp_path / "site")
    assert result.returncode != 0 and "no-such-section" in result.stderr


def test_the_readme_is_a_front_door():
    lines = README.splitlines()
    assert len(lines) < 250, f"README.md has {len(lines)} lines; the reference belongs in docs/"
    assert "make serve" in "\n".join(lines[:8]) and "make test" in "\n".join(lines[:8])
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    assert links and not [link for link in links if "://" not in link and not (ROOT / link).exists()]
    assert {f"docs/{name}" for name in ("pipelines.md", "serving.md", "client.md", "trainer.md", "deploy.md",
                                        "failures.md", "performance.md")} <= set(links)


def test_the_metrics_reference_lists_every_series_with_its_type_and_labels():
    import torch

    from augserve.server.metrics import Metrics

    rows = {match[0]: (match[1], set(re.findall(r"`(\w+)`", match[2]))) for match in re.findall(
        r"^\| `(\w+)` \| (\w+) \|([^|]*)\|", (ROOT / "docs" / "metrics.md").read_text(), re.MULTILINE)}
    exported = {}
    for collector in Metrics(torch.device("cpu")).registry._collector_to_names:
        name = collector._name + ("_total" if collector._type == "counter" else "")
        exported[name] = (collector._type, set(collector._labelnames))
    assert rows == exported
