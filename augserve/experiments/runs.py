"""Running an experiment's training runs: ``workers`` at a time in fresh interpreters (in this one when 1), with a
progress bar, and results.json rewritten as each run finishes, so an interrupted or failed two-hour experiment
keeps what it finished. Each finished run, learning curves included, is also appended to a journal beside
results.json, so that the same command run again with ``resume`` goes on from where it stopped. The driver writes
the final results.json, verdicts included, once every run is in."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import multiprocessing
import os
import pathlib
import sys
from typing import Callable

import torch

from augserve.trainer.monitor import History

# Arguments that say where or how a run is computed, not what: the server it is augmented on (the same numbers as
# in process) and its credential, the threads it is given. A run label leaves them out, so that a resumed command
# finds the runs it finished before, and no token is written to the journal.
WHERE_ONLY = frozenset({"target", "server", "token", "threads"})


def without_history(run: dict) -> dict:
    """A run as results.json records it: the learning curves live in the curves' own JSON."""
    return {key: value for key, value in run.items() if key != "history"}


def write_json(path: pathlib.Path, value) -> None:
    """``value`` as JSON at ``path``, replaced whole: an interruption leaves the old file or the new one."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=1, default=str))
    os.replace(partial, path)


def run_label(call: Callable[[], dict]) -> str:
    """What names a run across interpreters and invocations: its function and arguments, data passed by type name."""
    if not isinstance(call, functools.partial):
        return f"{call.__module__}.{call.__qualname__}()"
    arguments = [_label_value(value) for value in call.args]
    arguments += [f"{name}={_label_value(value)}" for name, value in sorted(call.keywords.items())
                  if name not in WHERE_ONLY]
    return f"{call.func.__module__}.{call.func.__qualname__}({', '.join(arguments)})"


def _label_value(value) -> str:
    if value is None or isinstance(value, (bool, int, float, str, pathlib.PurePath)):
        return repr(value)
    if isinstance(value, (tuple, list)):
        items = ", ".join(_label_value(item) for item in value)
        return f"({items})" if isinstance(value, tuple) else f"[{items}]"
    if isinstance(value, dict):
        items = sorted((_label_value(key), _label_value(item)) for key, item in value.items())
        return "{" + ", ".join(f"{key}: {item}" for key, item in items) + "}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a recipe, or data with its sizes
        fields = (f"{field.name}={_label_value(getattr(value, field.name))}" for field in dataclasses.fields(value))
        return f"{type(value).__name__}({', '.join(fields)})"
    return type(value).__name__  # the data: the same command loads the same


def _journal_line(label: str, run: dict) -> str:
    history = run.get("history")
    kept = {**run, "history": {"history": history.to_dict()}} if isinstance(history, History) else run
    return json.dumps({"label": label, "run": kept}, default=str) + "\n"


def _journal_run(value: dict) -> dict:
    history = value.get("history")
    if isinstance(history, dict) and set(history) == {"history"}:
        return {**value, "history": History.from_dict(history["history"])}
    return value


def _resumed(journal: pathlib.Path, labels: list[str]) -> dict[int, dict]:
    """The runs the journal holds for these labels (by index). Its other runs stay in it (another command's, or
    this one's before an argument changed); a line cut short by an interruption is dropped."""
    found: dict[str, dict] = {}
    if journal.exists():
        for line in journal.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and "label" in entry and "run" in entry:
                found[entry["label"]] = entry["run"]
    partial = journal.with_name(journal.name + ".partial")
    partial.write_text("".join(_journal_line(label, run) for label, run in found.items()))
    os.replace(partial, journal)
    taken = {index: _journal_run(found[label]) for index, label in enumerate(labels) if label in found}
    others = len(set(found) - set(labels))
    print(f"resumed: {len(taken)} of {len(labels)} runs from {journal}"
          + (f" ({others} other runs there left as they are)" if others else ""), file=sys.stderr)
    return taken


def run_all(calls: list[Callable[[], dict]], *, workers: int, results: pathlib.Path, header: dict | None = None,
            progress: bool = True, resume: bool = False) -> list[dict]:
    """Every call (a picklable ``functools.partial`` of a module-level run function), in the calls' order.
    After each finished run, ``results`` holds ``{**header, "finished": k, "of": n, "runs": [...]}`` (the runs
    alone when ``header`` is None) and the journal beside it gains the run. With ``resume``, the runs the journal
    holds for these calls (same function, same arguments) are taken from it, not run again. A run that raises
    stops the rest: runs not started are cancelled, the ones under way are waited for and recorded, then the
    error is raised."""
    from tqdm import tqdm

    labels = [run_label(call) for call in calls]
    journal = results.with_name(results.stem + ".journal.jsonl")
    if resume:
        finished = _resumed(journal, labels)
    else:
        finished = {}
        if journal.exists():  # kept once: a forgotten --resume costs no finished run
            previous = journal.with_name(journal.name + ".previous")
            journal.replace(previous)
            print(f"started afresh: the runs finished before are in {previous} (to take them, move it back to "
                  f"{journal.name} and add --resume)", file=sys.stderr)

    def write_results() -> None:
        runs = [without_history(finished[i]) for i in sorted(finished)]
        write_json(results, runs if header is None else {**header, "finished": len(runs), "of": len(calls),
                                                         "runs": runs})

    def record(index: int, run: dict) -> None:
        finished[index] = run
        with journal.open("a") as lines:
            lines.write(_journal_line(labels[index], run))
        write_results()

    if finished:
        write_results()
    remaining = [index for index in range(len(calls)) if index not in finished]
    with tqdm(total=len(calls), initial=len(finished), desc="training runs", disable=not progress) as bar:
        if workers == 1:
            threads = torch.get_num_threads()
            try:
                for index in remaining:
                    record(index, calls[index]())
                    bar.update()
            finally:
                torch.set_num_threads(threads)  # a run may pin its own thread count
            return [finished[index] for index in range(len(calls))]
        context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch or gRPC threads
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {pool.submit(calls[index]): index for index in remaining}
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
