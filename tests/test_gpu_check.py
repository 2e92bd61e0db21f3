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


def test_its_cpu_against_gpu_sections_run_every_preset_and_op_on_the_stand_in_device():
    """What a lent GPU runs first, here on the stand-in CUDA device: a section that stops on an op's required
    field or a preset's modality would cost a GPU loan, and the stand-in gives the CPU's bits."""
    from augserve import PRESETS
    from augserve.tools.gpu_check import difference_table, same_sample_rows, single_image_ops
    from augserve.tools.stand_in_device import OnDevice

    with OnDevice(cuda=True):
        same = same_sample_rows(samples=2, side=32)
        differences = difference_table(side=32, copies=1)
    assert [row.split(" | ")[0].lstrip("| ") for row in same[2:]] == list(PRESETS)
    assert all(row.endswith("| 100.0% |") for row in same[2:]), same
    assert [row.split(" | ")[0].lstrip("| ") for row in differences[2:]] == single_image_ops()
    assert all(row.endswith("| 0 | 0.0000 | yes |") for row in differences[2:]), differences


def test_a_section_that_stops_is_written_as_such_and_the_check_goes_on():
    from augserve.tools.gpu_check import guarded

    def plan_rows(repeats):
        raise RuntimeError(f"CUDA graph capture failed after {repeats} repeats")

    assert guarded(plan_rows, 3) == ["plan_rows failed: RuntimeError: CUDA graph capture failed after 3 repeats"]
    assert guarded(lambda n: [f"| row {n} |"], 1) == ["| row 1 |"]


def test_its_plan_rows_time_both_plans_and_say_when_the_graph_column_ran_eagerly():
    """plan_rows on the stand-in CUDA device with a capture that re-runs on replay (then one that fails, as an
    op CUDA cannot capture would): a row per preset and batch, the image and the audio preset alike."""
    from augserve.tools.gpu_check import plan_rows
    from augserve.tools.stand_in_device import OnDevice
    from test_cuda_graphs import Recapture

    with OnDevice(cuda=True):
        rows = plan_rows(1, {"cifar-randaug": 32, "sound-classify": None}, (2,), sync=lambda: None,
                         capture=Recapture())
        eager = plan_rows(1, {"cifar-randaug": 32}, (2,), sync=lambda: None, capture=Recapture(fail=True))
    assert [row.split(" | ")[:2] for row in rows[2:]] == [["| cifar-randaug", "2"], ["| sound-classify", "2"]]
    assert not any("failed:" in row or "eager:" in row for row in rows), rows
    assert "(eager: the capture failed)" in eager[2] and "failed: " not in eager[2].replace("capture failed", ""), eager
