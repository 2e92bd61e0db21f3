"""Running an experiment's training runs: ``workers`` at a time in fresh interpreters (in this one when 1), with a
progress bar, and results.json rewritten as each run finishes, so an interrupted two-hour experiment keeps what it
finished. The driver writes the final results.json, verdicts included, once every run is in."""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import pathlib
from typing import Callable

import torch


def without_history(run: dict) -> dict:
    """A run as results.json records it: the learning curves live in the curves' own JSON."""
    return {key: value for key, value in run.items() if key != "history"}


def run_all(calls: list[Callable[[], dict]], *, workers: int, results: pathlib.Path, header: dict | None = None,
            progress: bool = True) -> list[dict]:
    """Every call (a picklable ``functools.partial`` of a module-level run function), in the calls' order.
    After each finished run, ``results`` holds ``{**header, "finished": k, "of": n, "runs": [...]}`` (the runs
    alone when ``header`` is None)."""
    from tqdm import tqdm

    finished: dict[int, dict] = {}

    def record(index: int, run: dict) -> None:
        finished[index] = run
        runs = [without_history(finished[i]) for i in sorted(finished)]
        kept = runs if header is None else {**header, "finished": len(runs), "of": len(calls), "runs": runs}
        results.write_text(json.dumps(kept, indent=1, default=str))

    with tqdm(total=len(calls), desc="training runs", disable=not progress) as bar:
        if workers == 1:
            threads = torch.get_num_threads()
            try:
                for index, call in enumerate(calls):
                    record(index, call())
                    bar.update()
            finally:
                torch.set_num_threads(threads)  # a run may pin its own thread count
        else:
            context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch or gRPC threads
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = {pool.submit(call): index for index, call in enumerate(calls)}
                for future in concurrent.futures.as_completed(futures):
                    record(futures[future], future.result())
                    bar.update()
    return [finished[index] for index in range(len(calls))]
