"""The engine reuses freed memory: a batch's buffers do not cost fresh page faults on every call.

Counted, not timed: minor page faults of a subprocess that runs a time warp on 256x3x1000
(3 MB buffers) ten times, with the tuning a Pipeline applies and with it opted out.
"""

from __future__ import annotations

import os
import subprocess
import sys

CALLS = 10
FAULTS_PER_CALL = f"""
import resource, torch
from augserve import Pipeline
from augserve.runtime import keep_freed_memory
pipe = Pipeline.from_spec([{{"op": "time_warp"}}])
series = torch.randn(256, 3, 1000).cumsum(-1)
for _ in range(3):
    pipe(series, seed=0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({CALLS}):
    pipe(series, seed=0)
print(keep_freed_memory(), (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / {CALLS})
"""


def _faults_per_call(opt_out: bool) -> tuple[str, float]:
    env = dict(os.environ, AUGSERVE_KEEP_FREED_MEMORY="0" if opt_out else "1")
    result = subprocess.run([sys.executable, "-c", FAULTS_PER_CALL], env=env, capture_output=True, text=True,
                            timeout=300, check=True)
    applied, faults = result.stdout.split()
    return applied, float(faults)


def test_a_pipeline_keeps_freed_memory_for_its_next_batch():
    applied, faults = _faults_per_call(opt_out=False)
    assert applied == "True"  # this project's machines run glibc
    assert faults < 100, f"{faults} page faults per call: freed buffers went back to the kernel"


def test_opting_out_leaves_glibc_as_it_was():
    applied, faults = _faults_per_call(opt_out=True)
    assert applied == "False"
    assert faults > 1000, f"only {faults} page faults per call untuned: the test above no longer measures anything"
