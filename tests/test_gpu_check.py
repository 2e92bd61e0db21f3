"""``make gpu-check`` on a machine without a GPU refuses clearly, and its results section replaces itself."""

import subprocess
import sys

from augserve.tools.gpu_check import SECTION, write_section


def test_without_a_gpu_it_exits_2_saying_why():
    result = subprocess.run([sys.executable, "-m", "augserve.tools.gpu_check"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2 and "no CUDA device" in result.stderr


def test_its_section_is_replaced_and_the_rest_of_the_results_kept(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmarks\n\nNotes.\n\n## Older\n\nkept\n\n<!-- bench table: generated -->\n\n| a |\n")
    write_section(str(results), ["first run"])
    write_section(str(results), ["second run", "| row |"])
    text = results.read_text()
    assert text.count(SECTION) == 1 and "second run" in text and "first run" not in text
    assert text.index("## Older") < text.index(SECTION) < text.index("<!-- bench table")
    assert "Notes." in text and "kept" in text and text.rstrip().endswith("| a |")
