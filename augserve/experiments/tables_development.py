"""``augserve train --dataset tables-dev``: breast-cancer's model and training budget, chosen on development seeds.

The seeds of ``augserve train --dataset tables`` are its test. This runs plain and smote for every candidate MLP
(hidden layers x epochs) on the development seeds (other splits and subsamples of the same 569 rows, as
breast-cancer has no others) and chooses the candidate with the best balanced accuracy averaged over both arms,
plain + half of SMOTE's lead: where plain varies little between candidates, the one SMOTE helps most.
"""

from __future__ import annotations

import functools
import pathlib
import statistics
import time
from dataclasses import asdict, replace

import torch

from augserve.experiments.runs import run_all, write_json
from augserve.experiments.tables import DEVELOPMENT_SEEDS, IMBALANCED, RECIPES, TableRecipe, run_table
from augserve.trainer.monitor import percent_mean_sd, seeds_text

FIRST_SEED = DEVELOPMENT_SEEDS.start
ARMS = ("plain", "smote")
CANDIDATES: dict[str, TableRecipe] = {
    f"{' -> '.join(map(str, hidden))} hidden, {epochs} epochs": replace(RECIPES[IMBALANCED], hidden=hidden,
                                                                         epochs=epochs)
    for hidden in ((32, 32), (16,)) for epochs in (30, 50, 100)}


def _development_run(seed: int, arm: str, name: str, recipe: TableRecipe, threads: int) -> dict:
    run = run_table(seed, IMBALANCED, arm, recipe=recipe, threads=threads)
    return {"candidate": name, **{key: value for key, value in run.items() if key not in ("history", "test_curve")}}


def candidate_rows(runs: list[dict], candidates: dict[str, TableRecipe]) -> tuple[str, list[dict]]:
    """(the chosen candidate, one row per candidate): each arm's balanced accuracies by seed, their mean over
    both arms, and smote's wins, ties and losses against plain seed by seed."""
    rows = []
    for name in candidates:
        score = {(r["seed"], r["arm"]): r["test_balanced_accuracy"] for r in runs if r["candidate"] == name}
        seeds = sorted({seed for seed, _ in score})
        by_arm = {arm: [score[seed, arm] for seed in seeds] for arm in ARMS}
        lead = [score[seed, "smote"] - score[seed, "plain"] for seed in seeds]
        rows.append({"candidate": name, **by_arm, "both": statistics.mean(by_arm["plain"] + by_arm["smote"]),
                     "lead": statistics.mean(lead), "wins": sum(d > 0 for d in lead),
                     "ties": sum(d == 0 for d in lead), "losses": sum(d < 0 for d in lead)})
    return max(rows, key=lambda row: row["both"])["candidate"], rows


def run_table_development(*, out: str | pathlib.Path, seeds: int = 32, workers: int = 2,
                          candidates: dict[str, TableRecipe] | None = None, progress: bool = True,
                          resume: bool = False) -> str:
    """plain and smote for every candidate on ``seeds`` development seeds; writes summary.md and results.json under
    ``out`` (the choice included) and returns the summary."""
    if not 1 <= seeds <= len(DEVELOPMENT_SEEDS) or workers < 1:
        raise ValueError(f"expected --seeds from 1 to {len(DEVELOPMENT_SEEDS)} (the development seeds) and --workers "
                         f">= 1, got {seeds}, {workers}")
    candidates = candidates or CANDIDATES
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    threads = torch.get_num_threads() if workers == 1 else 1
    calls = [functools.partial(_development_run, seed, arm, name, recipe, threads) for name, recipe in
             candidates.items() for seed in range(FIRST_SEED, FIRST_SEED + seeds) for arm in ARMS]
    header = {"candidates": {name: asdict(recipe) for name, recipe in candidates.items()},
              "seeds": list(range(FIRST_SEED, FIRST_SEED + seeds))}
    runs = run_all(calls, workers=workers, results=out / "results.json", header=header, progress=progress,
                   resume=resume)
    wall = time.perf_counter() - started
    chosen, _ = candidate_rows(runs, candidates)
    write_json(out / "results.json", {**header, "chosen": chosen, "wall_seconds": wall, "finished": len(runs),
                                      "of": len(runs), "runs": runs})
    summary = development_summary(runs, candidates, seeds=seeds, workers=workers, wall=wall)
    (out / "summary.md").write_text(summary)
    return summary


def development_summary(runs: list[dict], candidates: dict[str, TableRecipe], *, seeds: int, workers: int,
                        wall: float) -> str:
    """summary.md of a development run: the protocol, one row per candidate, the choice."""
    chosen, rows = candidate_rows(runs, candidates)
    recipe = RECIPES[IMBALANCED]
    lines = [f"# augserve train: breast-cancer's model chosen on development seeds, {seeds_text(seeds)}", "",
             f"`augserve train --dataset tables-dev --seeds {seeds}` ({wall / 60:.1f} minutes, {workers} runs at a "
             "time, one thread each)", "",
             f"Seeds {FIRST_SEED}-{FIRST_SEED + seeds - 1}: other stratified splits and 1:{recipe.imbalance} "
             "subsamples of breast-cancer's 569 rows than the test seeds 0, 1, ... of `augserve train --dataset "
             "tables` (the set has no other rows, so the choice has seen rows that the test splits hold; it chooses "
             "the model, not an arm). Every candidate trains as the test does (an MLP with ReLU, AdamW lr "
             f"{recipe.learning_rate:g}, weight decay {recipe.weight_decay:g}, cosine decay to 0, batch "
             f"{recipe.batch_size}, the last epoch's weights scored) with its own hidden layers and epochs; plain and "
             "smote as in the test. Rule, fixed before any run: the candidate with the best balanced accuracy "
             "averaged over both arms, which is plain + half of SMOTE's lead: where plain varies little between "
             "candidates, the rule picks the one SMOTE helps most.", "",
             "| candidate | plain % (mean ± sd) | smote % (mean ± sd) | both arms % | smote - plain | seeds smote "
             "better / tied / worse |", "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        mark = " (chosen)" if row["candidate"] == chosen else ""
        lines.append(f"| {row['candidate']}{mark} | {percent_mean_sd(row['plain'])} | {percent_mean_sd(row['smote'])}"
                     f" | {100 * row['both']:.1f} | {100 * row['lead']:+.1f} | {row['wins']} / {row['ties']} / "
                     f"{row['losses']} |")
    lines += ["", f"Chosen: **{chosen}** (`RECIPES` in `augserve/experiments/tables.py`).", ""]
    return "\n".join(lines)
