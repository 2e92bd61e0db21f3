"""Bench cases: a pipeline's throughput while a CPU-bound neighbour process shares the machine.

The neighbour is switched on and off (SIGCONT / SIGSTOP) as the engines take turns, so the rows
with and without it come from the same round-robin run. Each pipeline runs with torch's default
thread count and with the server's ``ThreadBudget`` (``--threads 0``): one budget per row, as a
server that has run in that state for a while would have.
"""

from __future__ import annotations

import atexit
import signal
import subprocess
import sys
import time
from typing import Callable

import torch

from augserve.tools.bench.harness import Engine
from augserve.runtime import dying_with_parent
from augserve.server.cpu import ThreadBudget

SETTLE = 0.3  # seconds after switching the neighbour on or off, before timing


class Neighbour:
    """A CPU-bound process (one busy core), stopped until asked to run."""

    def __init__(self):
        self.process = subprocess.Popen([sys.executable, "-c", dying_with_parent("while True: pass")])
        self.process.send_signal(signal.SIGSTOP)
        self.running = False
        atexit.register(self.close)

    def run(self, running: bool) -> None:
        if running != self.running:
            self.process.send_signal(signal.SIGCONT if running else signal.SIGSTOP)
            self.running = running
            time.sleep(SETTLE)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def contention_cases(pipelines: dict[str, tuple[Callable[[], object], int, int]],
                     wanted: Callable[[str], bool]) -> dict[str, list[Engine]]:
    """For each named pipeline (call, samples per call, calls per timed run): alone and beside a busy
    neighbour, torch's default threads vs the budget.

    A timed run makes many calls of a short pipeline, so the rare long stalls at a parallel barrier
    count in the rate as they do in a training job (a median over single calls would hide them).
    """
    pipelines = {name: run for name, run in pipelines.items() if wanted(_case(name))}
    if not pipelines:
        return {}
    neighbour = Neighbour()
    default = torch.get_num_threads()
    fixed = ThreadBudget(default)

    cases = {}
    for name, (call, samples, calls) in pipelines.items():
        def under(busy: bool, budget: ThreadBudget, call=call, calls=calls) -> Callable[[], object]:
            def run():
                neighbour.run(busy)
                for _ in range(calls):
                    with budget.batch():
                        call()
                torch.set_num_threads(default)
            return run

        note = f"{calls} calls per timed run" if calls > 1 else ""
        cases[_case(name)] = [
            Engine(f"alone, torch default ({default} threads)", under(False, fixed), note, samples * calls),
            Engine("alone, ThreadBudget", under(False, ThreadBudget()), note, samples * calls),
            Engine(f"busy neighbour, torch default ({default} threads)", under(True, fixed), note,
                   samples * calls),
            Engine("busy neighbour, ThreadBudget", under(True, ThreadBudget()),
                   f"the server's --threads 0; {note}".rstrip("; "), samples * calls),
        ]
    return cases


def _case(name: str) -> str:
    return f"CPU contention: {name}, 1 busy neighbour process"
