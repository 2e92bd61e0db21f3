"""Running an experiment's training runs: ``workers`` at a time in fresh interpreters (in this one when 1), with a
progress bar, and results.json rewritten as each run finishes, so an interrupted or failed two-hour experiment
keeps what it finished. The driver writes the final results.json, verdicts included, once every run is in."""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import pathlib
from typing import Callable

import torch


def without_history(run: dict) -> dict:
    """A run as results.json records it: the learning curves live in the curves' own JSON."""
    return {key: value for key, value in run.items() if key != "history"}


def write_json(path: pathlib.Path, value) -> None:
    """``value`` as JSON at ``path``, replaced whole: an interruption leaves the old file or the new one."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=1, default=str))
    os.replace(partial, path)


def run_all(calls: list[Callable[[], dict]], *, workers: int, results: pathlib.Path, header: dict | None = None,
            progress: bool = True) -> list[dict]:
    """Every call (a picklable ``functools.partial`` of a module-level run function), in the calls' order.
    After each finished run, ``results`` holds ``{**header, "finished": k, "of": n, "runs": [...]}`` (the runs
    alone when ``header`` is None). A run that raises stops the rest: runs not started are cancelled, the ones
    under way are waited for and recorded, then the error is raised."""
    from tqdm import tqdm

    finished: dict[int, dict] = {}

    def record(index: int, run: dict) -> None:
        finished[index] = run
        runs = [without_history(finished[i]) for i in sorted(finished)]
        write_json(results, runs if header is None else {**header, "finished": len(runs), "of": len(calls),
                                                         "runs": runs})

    with tqdm(total=len(calls), desc="training runs", disable=not progress) as bar:
        if workers == 1:
            threads = torch.get_num_threads()
            try:
                for index, call in enumerate(calls):
                    record(index, call())
                    bar.update()
            finally:
                torch.set_num_threads(threads)  # a run may pin its own thread count
            return [finished[index] for index in range(len(calls))]
        context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch or gRPC threads
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {pool.submit(call): index for index, call in enumerate(calls)}
            try:
                for future in concurrent.futures.as_completed(futures):
                    record(futures[future], future.result())
                    bar.update()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                for future, index in futures.items():  # the runs that were under way
                    if index not in finished and future.done() and not future.cancelled() and not future.exception():
                        record(index, future.result())
                raise
    return [finished[index] for index in range(len(calls))]
