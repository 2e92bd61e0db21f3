"""Every Python and shell block of the README and docs/ runs as written, against a server started here.

Blocks speak to ``127.0.0.1:50051`` (where ``make serve`` listens); here that address is the test server's, and
``.venv/bin/`` is this checkout's. A block that needs what this machine lacks (a cluster, a registry, a GPU) or
runs for good (``make serve``) says so on the line before it: ``<!-- not run: <why> -->``.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

from server_harness import RunningServer

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^(?:<!-- not run: (?P<why>[^>]*) -->\n)?```(?P<language>python|sh)\n(?P<code>.*?)^```",
                   re.MULTILINE | re.DOTALL)
RUN = {"python": [sys.executable], "sh": ["bash", "-e"]}
ADDRESS = "127.0.0.1:50051"


def _blocks():
    for page in PAGES:
        text = page.read_text()
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start("code"))
            marks = [pytest.mark.skip(reason=match["why"])] if match["why"] else []
            yield pytest.param(match["language"], match["code"], id=f"{page.relative_to(ROOT)}:{line}", marks=marks)


@pytest.fixture(scope="module")
def server():
    running = RunningServer(metrics_port=0)
    yield running
    running.stop()


@pytest.mark.parametrize("language, code", list(_blocks()))
def test_the_block_runs(language, code, server, tmp_path):
    script = tmp_path / "block"
    script.write_text(code.replace(ADDRESS, server.target).replace(".venv/bin/", f"{ROOT}/.venv/bin/"))
    result = subprocess.run([*RUN[language], str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{code}\n--- stderr ---\n{result.stderr[-4000:]}"


def test_the_blocks_are_found():
    blocks = list(_blocks())
    assert len(blocks) >= 25 and any(block.id.startswith("README.md") for block in blocks)
    assert {block.values[0] for block in blocks} == {"python", "sh"}
