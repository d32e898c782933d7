"""Corpus preparation inside `mlmkit pretrain`: this checkout against an earlier revision, in the same run.

Runs the same command, `mlmkit pretrain --recipe demo-pos train.max_steps=1` by default, with the
source of an earlier revision (a temporary `git worktree`, put first on PYTHONPATH; the installed
packages are this environment's) and with this checkout, alternating, each cold: a fresh
`data.cache_dir` and `datasets` cache every time. Each run is stopped at its "data:" line. For
each it reports the seconds from launch to that line and the preparation alone: from the line
printed just before it (the model is loaded by then; shown, so the mark is visible) to the
"data:" line. Prints the medians and the ratios before / after.

    python benchmarks/prepare_before_after.py --before 21edf35^ [--rounds 3] [--recipe demo-pos]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed_run(source: Path, recipe: str, folder: Path, extra: list[str]) -> dict:
    """Launch one cold run with the package at ``source``; seconds to the "data:" line and from the line before."""
    run = folder / f"run-{time.monotonic_ns()}"
    env = dict(os.environ, PYTHONPATH=str(source), HF_DATASETS_CACHE=str(run / "datasets"), HF_HUB_OFFLINE="1",
               COLUMNS="200")
    command = [sys.executable, "-m", "mlmkit", "pretrain", "--recipe", recipe, "train.max_steps=1",
               f"output.dir={run / 'out'}", *extra]
    # a revision with the prepared-corpus cache gets a fresh one (a revision before it has no such setting)
    cache = [f"data.cache_dir={run / 'prepared'}"] if (source / "mlmkit" / "data" / "cache.py").exists() else []
    started = time.perf_counter()
    previous = (0.0, "(launch)")
    with subprocess.Popen(command + cache, stderr=subprocess.STDOUT, stdout=subprocess.PIPE, text=True,
                          env=env) as proc:
        for line in proc.stdout:
            now = time.perf_counter() - started
            if line.startswith("data:"):
                proc.kill()
                return {"to_data_s": now, "preparation_s": now - previous[0], "mark": previous[1]}
            if line.strip() and "%|" not in line:  # progress bars are not marks
                previous = (now, line.strip()[:70])
    raise SystemExit(f"{source}: the run ended (exit {proc.returncode}) without a 'data:' line")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="The earlier revision (any git revision).")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating runs of each.")
    parser.add_argument("--recipe", default="demo-pos", help="The pretrain recipe to run.")
    parser.add_argument("overrides", nargs="*", help="Extra overrides for both commands.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="prepare-before-after-") as tmp:
        folder = Path(tmp)
        worktree = folder / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.before],
                       check=True, capture_output=True)
        try:
            sources = {"before": worktree / "src", "after": ROOT / "src"}
            results: dict[str, list[dict]] = {"before": [], "after": []}
            for round_number in range(1, args.rounds + 1):
                for name in ("before", "after") if round_number % 2 else ("after", "before"):
                    result = timed_run(sources[name], args.recipe, folder, args.overrides)
                    results[name].append(result)
                    print(f"round {round_number} {name:>6}: data ready {result['to_data_s']:6.1f} s, preparation "
                          f"{result['preparation_s']:6.1f} s (from: {result['mark']})", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False,
                           capture_output=True)
    medians = {name: {key: statistics.median(r[key] for r in runs) for key in ("to_data_s", "preparation_s")}
               for name, runs in results.items()}
    for key, label in (("to_data_s", "launch to data ready"), ("preparation_s", "preparation")):
        before, after = medians["before"][key], medians["after"][key]
        print(f"{label}: before {before:.1f} s, after {after:.1f} s (medians of {args.rounds}): "
              f"{before / after:.2f}x faster")


if __name__ == "__main__":
    main()
