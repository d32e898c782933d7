"""Pre-training throughput: the Hugging Face Trainer path of ``run_mlm.py`` against mlmkit's loop.

Both paths train the same model (same initial weights, saved once to a temporary
directory) on the same packed blocks (``load_text_corpus`` -> ``tokenize_corpus`` ->
``pack_blocks`` through ``build_pretrain_data``, the same held-out split), with the same
batch size, sequence length, number of steps and optimiser settings (AdamW, learning
rate, weight decay and its exclusions, linear schedule with the same warmup steps,
gradient clipping at 1.0):

(a) ``transformers.Trainer`` with ``DataCollatorForLanguageModeling`` (15% masking,
    80/10/10), the official ``run_mlm.py`` path: full-sequence MLM head, Trainer
    defaults otherwise (its default optimiser is fused AdamW), no evaluation, no
    checkpoints, ``report_to="none"``;
(b) ``mlmkit.training.pretrain.pretrain(cfg)``: sparse MLM head, packed blocks, the
    Accelerate loop.

Each path runs in its own fresh subprocess (so peak memory is not shared), alternating
(a), (b), (a), (b), ... so that load from other work on the machine hits both alike.

Timing. Tokens are real (non-padding) tokens. "all steps" covers the whole training
loop (Trainer: ``on_train_begin`` to ``on_train_end``; mlmkit: ``PretrainResult.
train_seconds``, which excludes data preparation and the before/after evaluation);
"steady" leaves out step 1 (allocator and kernel warm-up; with ``--compile`` also the
compiling steps). Per-step times come from Trainer callbacks and from mlmkit's
``metrics.jsonl`` (one line per step on CPU). On CPU the headline rate of a run is its
median step, which shrugs off bursts of load from other work on a shared machine; on
GPU it is the steady mean. The headline ratio divides the medians over rounds.

Memory. CPU: the worker's peak resident set (``ru_maxrss``) and its growth over the
resident set right after imports. GPU: ``torch.cuda.max_memory_allocated``.

Model FLOPs (matmuls only; training = 3x forward: 2 FLOPs per multiply-add forward, 4 backward)::

    per token      6 * N_layers_params  +  12 * n_layers * seq * hidden      (dense + attention scores/values)
    per head row   6 * (hidden * hidden + hidden * vocab)                     (transform + decoder of the MLM head)

N_layers_params counts the encoder layers' weights (no embeddings, no head). "useful"
FLOPs apply the head to the predicted positions only (what the loss needs; the same for
both paths); "executed" FLOPs count what each path really runs: the head on every position
for the Trainer, on predicted positions for mlmkit, and for mlmkit's last encoder layer
(``model.sparse_last_layer``, on by default) the query, attention-output and feed-forward
matmuls and the attention of predicted positions only::

    saved per unpredicted token   6 * (2 * hidden^2 + 2 * hidden * intermediate)  +  12 * seq * hidden

Predicted positions are counted in the Trainer worker's batches (masking ratio x
non-special share, ~14%) and used for both.
MFU divides FLOP/s by a matrix-multiply peak (best of several large square matmuls:
fp32 on CPU, bf16 on GPU or with ``--bf16``) measured in each run's own process right
before and after it trains, so that a run slowed by other work on a shared machine is
compared with the peak of that moment; the median over rounds is reported.

Loss agreement. A separate run feeds both paths the same masks: the model's dropout is
set to 0, mlmkit's loop runs with a recording copy of its random-token masking, and the
Trainer replays the recorded masked batches (input ids, attention mask, labels) in the
same order (``train_sampling_strategy="sequential"``), so step k sees the same masked
batch in both. The per-step training losses must agree within ``AGREEMENT_TOLERANCE``
(the sparse and the full head sum in a different order, so the losses drift apart a
little over the steps; bf16 autocast rounds far more coarsely than fp32).

Usage::

    make bench                                         # CPU: demo model, seq 128 (~5 min on 2 cores)
    python benchmarks/pretrain_throughput.py --device cuda --size bert-base --seq 128,512 --bf16
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULT_MARK = "BENCH_RESULT "
#: max |loss_a - loss_b| over the agreement run's steps. Measured on CPU over 6 steps: 1.9e-6 (fp32),
#: 6.8e-4 (bf16 autocast); feeding different masks moves the loss by ~0.1 from the second step on
AGREEMENT_TOLERANCE = {"fp32": 1e-3, "bf16": 2e-2}
#: mlmkit's default masking
MASK_RATIO = 0.15
CPU_DEFAULTS = {"batch": 32, "steps": 6, "max_documents": 6000, "log_every": 1}
CUDA_DEFAULTS = {"batch_tokens": 16384, "steps": 60, "max_documents": None, "log_every": 10}


# --------------------------------------------------------------------------------------------- measuring
def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def matmul_peak(device: str, bf16: bool, seconds: float = 1.5) -> float:
    """Best FLOP/s of large square matmuls on ``device`` (fp32, or bf16 when asked / on GPU)."""
    import torch

    dtype = torch.bfloat16 if bf16 or device == "cuda" else torch.float32
    sizes = (8192, 4096) if device == "cuda" else (2048, 3072)
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(2):
            a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / len(sizes):
            for _ in range(5 if device == "cuda" else 1):
                a @ b
                done += 1
            if device == "cuda":
                torch.cuda.synchronize()
        best = max(best, 2 * n**3 * done / (time.perf_counter() - start))
    return best


# --------------------------------------------------------------------------------------------- models
def materialize_model(size: str, workdir: Path, seed: int) -> dict[str, Any]:
    """Save the benchmark model (and a dropout-free copy) once, so both paths start from the same weights."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM
    from transformers.utils import logging as hf_logging

    from mlmkit.data.embedded import embedded_model_dir

    hf_logging.set_verbosity_error()
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir())
    torch.manual_seed(seed)
    if size == "demo":
        # the packaged MiniLM-L6-H384 encoder; its MLM head starts fresh (seeded above)
        model = BertForMaskedLM.from_pretrained(embedded_model_dir())
        label = "MiniLM-L6-H384 (packaged demo model)"
    elif size == "bert-base":
        model = BertForMaskedLM(BertConfig(vocab_size=len(tokenizer)))  # BertConfig's defaults are bert-base
        label = "bert-base-sized BERT (from BertConfig, random init)"
    else:
        raise SystemExit(f"unknown --size {size!r} (demo, bert-base)")
    dirs = {"speed": workdir / "model", "agree": workdir / "model-no-dropout"}
    model.save_pretrained(dirs["speed"])
    tokenizer.save_pretrained(dirs["speed"])
    model.config.hidden_dropout_prob = 0.0
    model.config.attention_probs_dropout_prob = 0.0
    model.save_pretrained(dirs["agree"])
    tokenizer.save_pretrained(dirs["agree"])

    cfg = model.config
    layer_params = sum(p.numel() for p in model.bert.encoder.parameters())
    head_matmul = cfg.hidden_size * cfg.hidden_size + cfg.hidden_size * cfg.vocab_size
    return {
        "label": label, "dirs": {k: str(v) for k, v in dirs.items()},
        "params": sum(p.numel() for p in model.parameters()), "layer_params": layer_params,
        "hidden": cfg.hidden_size, "layers": cfg.num_hidden_layers, "vocab": cfg.vocab_size,
        "head_matmul_params": head_matmul, "intermediate": cfg.intermediate_size,
    }


def flops_per_step(info: dict[str, Any], seq: int, tokens: float, head_rows: float) -> float:
    """Training FLOPs of one step: dense and attention matmuls for ``tokens``, the head for ``head_rows``."""
    per_token = 6 * info["layer_params"] + 12 * info["layers"] * seq * info["hidden"]
    return per_token * tokens + 6 * info["head_matmul_params"] * head_rows


# --------------------------------------------------------------------------------------------- workers
def bench_config(spec: dict[str, Any]):
    """The PretrainConfig both paths build their data from (and mlmkit trains with)."""
    from mlmkit.config.schema import PretrainConfig

    cfg = PretrainConfig()
    cfg.model.name_or_path = spec["model_dir"]
    cfg.data.source = "embedded"
    cfg.data.max_seq_length = spec["seq"]
    cfg.data.max_documents = spec["max_documents"]
    cfg.data.eval_max_blocks = 16  # mlmkit evaluates before/after (outside the timed loop); keep it short
    cfg.masking = {"name": spec.get("masking", "random"), "ratio": MASK_RATIO}
    t = cfg.train
    t.max_steps, t.batch_size, t.lr, t.weight_decay = spec["steps"], spec["batch"], spec["lr"], spec["weight_decay"]
    t.warmup_ratio, t.lr_scheduler, t.max_grad_norm, t.seed = spec["warmup_ratio"], "linear", 1.0, spec["seed"]
    t.mixed_precision = "bf16" if spec["bf16"] else "no"
    t.log_every = spec["log_every"]
    t.compile = spec.get("compile", False)
    t.fast_dropout = spec.get("fast_dropout", True)
    cfg.model.sparse_last_layer = spec.get("sparse_last_layer", True)
    t.eval_batch_size = 64
    cfg.output.dir = spec["out"]
    cfg.output.overwrite = True
    return cfg


def _memory(device: str, rss_after_imports: int) -> dict[str, Any]:
    import torch

    if device == "cuda":
        return {"peak_gpu_bytes": torch.cuda.max_memory_allocated()}
    peak = peak_rss_bytes()
    return {"peak_rss_bytes": peak, "rss_growth_bytes": peak - rss_after_imports}


def optimizer_label(optimizer: Any) -> str:
    inner = getattr(optimizer, "optimizer", optimizer)  # Accelerate's wrapper
    kind = "fused" if inner.defaults.get("fused") else "foreach" if inner.defaults.get("foreach") else "default"
    return f"{type(inner).__name__} ({kind})"


def trainer_worker(spec: dict[str, Any], rss_after_imports: int) -> dict[str, Any]:
    """Path (a): transformers.Trainer + DataCollatorForLanguageModeling (run_mlm.py), full MLM head."""
    import datasets
    import torch
    from transformers import (
        AutoModelForMaskedLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from mlmkit.masking.random_token import RandomMasking
    from mlmkit.training.pretrain import build_pretrain_data

    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    agree = spec["mode"] == "agree"
    if agree:
        # replay mlmkit's masked batches, in mlmkit's order (the sampler is sequential in this mode)
        recorded = torch.load(spec["record"])
        columns = {k: torch.cat([batch[k] for batch in recorded]).tolist() for k in recorded[0]}
        train = datasets.Dataset.from_dict(columns)

        def collator(examples):
            return {k: torch.tensor([e[k] for e in examples], dtype=torch.long) for k in examples[0]}
    else:
        train, _, _ = build_pretrain_data(bench_config(spec), tokenizer, RandomMasking(ratio=MASK_RATIO))
        collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=MASK_RATIO)

    class Counting:
        """Counts real tokens and predicted positions of each batch the collator builds."""

        def __init__(self) -> None:
            self.tokens: list[int] = []
            self.predicted: list[int] = []

        def __call__(self, examples):
            batch = collator(examples)
            self.tokens.append(int(batch["attention_mask"].sum()))
            self.predicted.append(int((batch["labels"] != -100).sum()))
            return batch

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.begin = self.end = 0.0
            self.step_ends: list[float] = []

        def _now(self) -> float:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            return time.perf_counter()

        def on_train_begin(self, args, state, control, **kwargs):
            self.begin = self._now()

        def on_step_end(self, args, state, control, **kwargs):
            # wait for the GPU only at the two steps the steady rate is measured between
            timed = state.global_step in (spec["warm"], state.max_steps)
            self.step_ends.append(self._now() if timed else time.perf_counter())

        def on_train_end(self, args, state, control, **kwargs):
            self.end = self._now()

    counting, clock = Counting(), Clock()
    model = AutoModelForMaskedLM.from_pretrained(spec["model_dir"])
    steps = spec["steps"]
    args = TrainingArguments(
        output_dir=spec["out"], per_device_train_batch_size=spec["batch"], max_steps=steps,
        learning_rate=spec["lr"], weight_decay=spec["weight_decay"], lr_scheduler_type="linear",
        warmup_steps=int(round(steps * spec["warmup_ratio"])),  # the same count mlmkit derives from warmup_ratio
        max_grad_norm=1.0, seed=spec["seed"], bf16=spec["bf16"], use_cpu=spec["device"] == "cpu",
        report_to="none", save_strategy="no", eval_strategy="no", disable_tqdm=True,
        logging_steps=1 if agree else 500, train_sampling_strategy="sequential" if agree else "random",
    )
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=counting,
                      processing_class=tokenizer, callbacks=[clock])
    trainer.train()

    tokens = counting.tokens[:steps]  # the loader may collate one batch ahead
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row and "step" in row]
    return {
        "path": "trainer", "steps": len(clock.step_ends), "tokens": sum(tokens),
        "seconds": clock.end - clock.begin,
        "steady_tokens": sum(tokens[spec["warm"]:]),
        "steady_seconds": clock.step_ends[-1] - clock.step_ends[spec["warm"] - 1],
        "step_rates": [n / (t1 - t0) for n, t0, t1 in zip(tokens[spec["warm"]:], clock.step_ends[spec["warm"] - 1:],
                                                          clock.step_ends[spec["warm"]:], strict=False)],
        "predicted_share": sum(counting.predicted[:steps]) / max(sum(tokens), 1),
        "losses": losses[:steps], "optimizer": optimizer_label(trainer.optimizer),
        "attn": model.config._attn_implementation,
        **_memory(spec["device"], rss_after_imports),
    }


def mlmkit_worker(spec: dict[str, Any], rss_after_imports: int) -> dict[str, Any]:
    """Path (b): mlmkit.training.pretrain.pretrain(cfg), sparse MLM head."""
    import torch
    from rich.console import Console

    from mlmkit.io.outputs import read_metrics
    from mlmkit.masking.random_token import RandomMasking
    from mlmkit.masking.registry import register_strategy
    from mlmkit.training.pretrain import pretrain

    recorded: list[tuple[Any, Any]] = []
    if spec["mode"] == "agree":
        @register_strategy("bench-recording")
        class RecordingMasking(RandomMasking):
            """Random-token masking that keeps each batch it masks, for the Trainer to replay."""

            name = "bench-recording"

            def __call__(self, batch, ratio=None, generator=None):
                input_ids, labels = super().__call__(batch, ratio, generator)
                recorded.append({"input_ids": input_ids.clone(), "attention_mask": batch["attention_mask"].clone(),
                                 "labels": labels.clone()})
                return input_ids, labels

        spec = {**spec, "masking": "bench-recording"}

    result = pretrain(bench_config(spec), console=Console(file=io.StringIO()))
    if spec["mode"] == "agree":
        torch.save(recorded[: spec["steps"]], spec["record"])
    rows = [r for r in read_metrics(Path(result.output_dir) / "metrics.jsonl") if r.get("split") == "train"]
    per_step = spec["batch"] * spec["seq"]  # packed blocks are full length except a rare tail block
    timed = [r for r in rows if r["step"] >= spec["warm"]]  # from the end of the warm-up steps left out
    first, last = timed[0], timed[-1]
    memory = _memory(spec["device"], rss_after_imports)
    # whether the last-layer shortcut was really used (it needs the BERT layer layout and passes a probe)
    from transformers import AutoModelForMaskedLM

    from mlmkit.modeling.sparse_head import SparseMLM

    last_layer = False
    if spec.get("sparse_last_layer", True) and not spec.get("compile"):
        last_layer = SparseMLM(AutoModelForMaskedLM.from_pretrained(spec["model_dir"]), last_layer=True).last_layer
    return {
        "path": "mlmkit", "steps": result.steps, "tokens": result.tokens_per_second * result.train_seconds,
        "seconds": result.train_seconds, "sparse_last_layer": last_layer,
        "steady_tokens": per_step * (last["step"] - first["step"]),
        "steady_seconds": last["elapsed_s"] - first["elapsed_s"],
        "step_rates": [per_step * (r1["step"] - r0["step"]) / (r1["elapsed_s"] - r0["elapsed_s"])
                       for r0, r1 in zip(timed, timed[1:], strict=False)],
        "losses": [r["loss"] for r in rows] if spec["log_every"] == 1 else [],
        **memory,
    }


def run_worker(kind: str, spec: dict[str, Any]) -> None:
    """Entry point of a worker subprocess: print one result line."""
    import torch  # (imports count as the baseline of the memory growth)
    import transformers  # noqa: F401

    import mlmkit.training.pretrain  # noqa: F401

    # the machine's matmul peak right before and after this run, so MFU compares like with like
    # even when other work on a shared machine comes and goes between runs
    peak = matmul_peak(spec["device"], spec["bf16"], seconds=1.0)
    if spec["device"] == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    baseline = rss_bytes()
    result = (trainer_worker if kind == "trainer" else mlmkit_worker)(spec, baseline)
    result["matmul_peak"] = max(peak, matmul_peak(spec["device"], spec["bf16"], seconds=1.0))
    print(RESULT_MARK + json.dumps(result), flush=True)


def spawn(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", TRANSFORMERS_VERBOSITY="error")
    if spec["device"] == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    proc = subprocess.run([sys.executable, __file__, "--worker", kind, "--spec", json.dumps(spec)],
                          capture_output=True, text=True, env=env, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
    raise SystemExit(f"the {kind} worker failed (exit code {proc.returncode})")


# --------------------------------------------------------------------------------------------- profile
#: op-name fragments -> category, first match wins
PROFILE_CATEGORIES = (
    ("matmul (linear, mm, bmm)", ("addmm", "aten::mm", "bmm", "linear", "matmul")),
    ("attention kernels (sdpa)", ("scaled_dot_product", "flash_attention", "_efficient_attention")),
    ("softmax / cross entropy", ("softmax", "nll_loss", "cross_entropy")),
    ("optimizer (AdamW)", ("adam",)),
    ("layer norm", ("layer_norm",)),
    ("gelu", ("gelu",)),
    ("dropout masks (bernoulli)", ("dropout", "bernoulli", "rand")),
    ("gradient clipping (norms)", ("norm", "clip")),
    ("embedding", ("embedding",)),
    ("gather / index", ("index", "masked", "nonzero", "gather", "scatter")),
    ("copies", ("copy_", "contiguous", "clone", "to_copy")),
    ("elementwise (mul, add, fill, ...)", ("mul", "add", "div", "fill", "where", "sum", "sub", "zero")),
)


def run_profile(spec: dict[str, Any], top: int) -> None:
    """Profile mlmkit's whole pretrain() call (CPU ops) and print where the time goes."""
    from torch.profiler import ProfilerActivity, profile

    rows: dict[str, float] = {}
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        result = mlmkit_worker(spec, rss_bytes())
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    for event in events:
        name = event.key.lower()
        category = next((c for c, keys in PROFILE_CATEGORIES if any(k in name for k in keys)), "other")
        rows[category] = rows.get(category, 0.0) + event.self_cpu_time_total
    print(f"mlmkit pretrain(): {result['steps']} steps, {result['tokens'] / result['seconds']:,.0f} tok/s "
          f"over the loop; self CPU time by category (whole call, incl. before/after evaluation):")
    for category, micros in sorted(rows.items(), key=lambda kv: -kv[1]):
        print(f"  {category:<28} {micros / 1e6:8.2f} s  {100 * micros / total:5.1f}%")
    print(events.table(sort_by="self_cpu_time_total", row_limit=top))


# --------------------------------------------------------------------------------------------- report
def fmt_bytes(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def summarize(results: list[dict[str, Any]], info: dict[str, Any], seq: int, by_median_step: bool) -> dict[str, Any]:
    """Rates, memory and MFU of one path over its rounds.

    The headline rate of a round is its median step (``by_median_step``, robust to bursts of
    load from other work on a shared CPU) or its steady mean (GPU, where per-step times
    are not synchronised). MFU is taken per round against the matmul peak measured in
    that round's own process; the median over rounds is reported.
    """
    steady = [r["steady_tokens"] / r["steady_seconds"] for r in results]
    overall = [r["tokens"] / r["seconds"] for r in results]
    headline = [statistics.median(r["step_rates"]) for r in results] if by_median_step else steady
    rate = statistics.median(headline)
    share = info["predicted_share"]
    useful = flops_per_step(info, seq, 1.0, share)  # per token
    executed = flops_per_step(info, seq, 1.0, 1.0 if results[0]["path"] == "trainer" else share)
    if results[0]["path"] == "mlmkit" and results[0].get("sparse_last_layer"):
        hidden = info["hidden"]
        executed -= (1 - share) * (6 * (2 * hidden**2 + 2 * hidden * info["intermediate"]) + 12 * seq * hidden)
    peaks = [r["matmul_peak"] for r in results]
    memory_key = "peak_gpu_bytes" if "peak_gpu_bytes" in results[0] else "peak_rss_bytes"
    summary = {
        "headline_tokens_per_s": headline, "median_headline": rate,
        "steady_tokens_per_s": steady, "all_steps_tokens_per_s": overall,
        "median_steady": statistics.median(steady), "median_all_steps": statistics.median(overall),
        "fastest_step": max(max(r["step_rates"], default=0.0) for r in results),
        "peak_memory": max(r[memory_key] for r in results), "memory_kind": memory_key,
        "matmul_peaks": peaks,
        "mfu_useful": statistics.median(x * useful / p for x, p in zip(headline, peaks, strict=True)),
        "mfu_executed": statistics.median(x * executed / p for x, p in zip(headline, peaks, strict=True)),
    }
    if memory_key == "peak_rss_bytes":
        summary["rss_growth"] = max(r["rss_growth_bytes"] for r in results)
    return summary


def print_report(header: list[str], rows: dict[str, dict[str, Any]], agreement: dict[str, Any] | None,
                 headline: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 150)
    for line in header:
        console.print(line)
    table = Table(show_lines=False)
    for col in ("path", f"tok/s, {headline} (per round)", "median", "mean steady", "mean all steps",
                "fastest step", "peak memory", "MFU useful", "MFU executed"):
        table.add_column(col, justify="left" if col == "path" else "right")
    names = {"trainer": "(a) HF Trainer + DataCollatorForLM", "mlmkit": "(b) mlmkit pretrain"}
    for key, s in rows.items():
        memory = fmt_bytes(s["peak_memory"])
        if "rss_growth" in s:
            memory += f" (+{fmt_bytes(s['rss_growth'])})"
        table.add_row(names[key], ", ".join(f"{x:,.0f}" for x in s["headline_tokens_per_s"]),
                      f"{s['median_headline']:,.0f}", f"{s['median_steady']:,.0f}", f"{s['median_all_steps']:,.0f}",
                      f"{s['fastest_step']:,.0f}", memory, f"{100 * s['mfu_useful']:.1f}%",
                      f"{100 * s['mfu_executed']:.1f}%")
    if rows:
        console.print(table)
        print_ratios(console, rows)
    if agreement is not None:
        verdict = "[green]agree[/]" if agreement["max_abs_diff"] <= agreement["tolerance"] else "[red]DIFFER[/]"
        console.print(f"loss agreement, same masks ({agreement['steps']} steps, dropout 0): max |loss_a - loss_b| = "
                      f"{agreement['max_abs_diff']:.2e} (tolerance {agreement['tolerance']:g}) {verdict}")
        console.print("  (a) " + " ".join(f"{x:.5f}" for x in agreement["trainer"]))
        console.print("  (b) " + " ".join(f"{x:.5f}" for x in agreement["mlmkit"]))


def print_ratios(console, rows: dict[str, dict[str, Any]]) -> None:
    a, b = rows["trainer"], rows["mlmkit"]
    per_round = [y / x for x, y in zip(a["headline_tokens_per_s"], b["headline_tokens_per_s"], strict=True)]
    console.print(f"ratio (b)/(a): [bold]{b['median_headline'] / a['median_headline']:.2f}x[/] "
                  f"(per round: {', '.join(f'{r:.2f}x' for r in per_round)}); by mean steady rate "
                  f"{b['median_steady'] / a['median_steady']:.2f}x, over all steps "
                  f"{b['median_all_steps'] / a['median_all_steps']:.2f}x, fastest steps "
                  f"{b['fastest_step'] / a['fastest_step']:.2f}x; peak memory (b)/(a): "
                  f"{b['peak_memory'] / a['peak_memory']:.2f}")


# --------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--size", choices=("demo", "bert-base"), default="demo")
    parser.add_argument("--seq", default="128", help="sequence lengths, comma-separated (default 128)")
    parser.add_argument("--batch", default=None,
                        help="batch size(s), one or one per --seq (CPU default 32; GPU default 16384 tokens / seq)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run (CPU 6, GPU 60)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating (a)/(b) rounds per sequence length")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast in both paths")
    parser.add_argument("--compile", action="store_true",
                        help="path (b) with train.compile=true (steady rates then leave out the compiling steps)")
    parser.add_argument("--no-fast-dropout", action="store_true",
                        help="path (b) with train.fast_dropout=false (torch's own dropout kernels)")
    parser.add_argument("--no-sparse-last-layer", action="store_true",
                        help="path (b) with model.sparse_last_layer=false (the last layer at every position)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--warmup-ratio", type=float, default=0.06)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-documents", type=int, default=-1,
                        help="documents of the embedded corpus to use (-1: device default; 0: all)")
    parser.add_argument("--agreement-steps", type=int, default=None, help="steps of the loss-agreement run")
    parser.add_argument("--no-agreement", action="store_true", help="skip the loss-agreement run")
    parser.add_argument("--json", default=None, help="also write all results to this JSON file")
    parser.add_argument("--profile", action="store_true",
                        help="profile mlmkit's loop (torch.profiler, CPU ops) instead of comparing")
    parser.add_argument("--worker", choices=("trainer", "mlmkit"), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        run_worker(args.worker, json.loads(args.spec))
        return 0

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    started = time.perf_counter()
    defaults = CPU_DEFAULTS if args.device == "cpu" else CUDA_DEFAULTS
    seqs = [int(s) for s in args.seq.split(",")]
    if args.batch:
        batches = [int(b) for b in args.batch.split(",")]
        batches = batches * len(seqs) if len(batches) == 1 else batches
    elif args.device == "cpu":
        batches = [defaults["batch"]] * len(seqs)
    else:
        batches = [max(1, defaults["batch_tokens"] // s) for s in seqs]
    if len(batches) != len(seqs):
        raise SystemExit("--batch needs one value or one per --seq value")
    steps = args.steps or defaults["steps"]
    max_documents = defaults["max_documents"] if args.max_documents < 0 else (args.max_documents or None)
    precision = "bf16" if args.bf16 else "fp32"
    # steps left out of the steady rate: step 1 (warm-up), or with --compile also the recompile for the
    # changing number of predicted rows (step 2), rounded to a logged step of mlmkit's loop
    warm = 1 if not args.compile else (2 if defaults["log_every"] == 1 else defaults["log_every"])

    def common_spec(seq: int, batch: int) -> dict[str, Any]:
        return {"device": args.device, "seq": seq, "batch": batch, "steps": steps, "lr": args.lr,
                "weight_decay": args.weight_decay, "warmup_ratio": args.warmup_ratio, "seed": args.seed,
                "bf16": args.bf16, "max_documents": max_documents, "log_every": defaults["log_every"], "warm": warm,
                "fast_dropout": not args.no_fast_dropout, "sparse_last_layer": not args.no_sparse_last_layer}

    if args.profile:
        with tempfile.TemporaryDirectory(prefix="mlmkit-profile-") as tmp:
            info = materialize_model(args.size, Path(tmp), args.seed)
            run_profile({**common_spec(seqs[0], batches[0]), "mode": "speed", "compile": args.compile,
                         "model_dir": info["dirs"]["speed"], "out": str(Path(tmp) / "run")}, top=25)
        return 0
    peak_before = matmul_peak(args.device, args.bf16)
    all_results: dict[str, Any] = {"args": vars(args), "runs": {}}
    with tempfile.TemporaryDirectory(prefix="mlmkit-bench-") as tmp:
        workdir = Path(tmp)
        info = materialize_model(args.size, workdir, args.seed)
        plans = []
        for seq, batch in zip(seqs, batches, strict=True):
            base = common_spec(seq, batch)
            results: dict[str, list[dict[str, Any]]] = {"trainer": [], "mlmkit": []}
            for round_index in range(args.rounds):
                for kind in ("trainer", "mlmkit"):
                    spec = {**base, "mode": "speed", "model_dir": info["dirs"]["speed"],
                            "compile": args.compile and kind == "mlmkit",
                            "out": str(workdir / f"{kind}-{seq}-{round_index}")}
                    results[kind].append(spawn(kind, spec))
                    print(f"  seq {seq} round {round_index + 1} {kind}: "
                          f"{results[kind][-1]['steady_tokens'] / results[kind][-1]['steady_seconds']:,.0f} tok/s "
                          f"steady", file=sys.stderr, flush=True)
            agreement = None
            if not args.no_agreement:
                agree_steps = args.agreement_steps or steps
                spec = {**base, "steps": agree_steps, "log_every": 1, "mode": "agree",
                        "model_dir": info["dirs"]["agree"], "record": str(workdir / f"record-{seq}.pt")}
                b = spawn("mlmkit", {**spec, "out": str(workdir / f"agree-mlmkit-{seq}")})
                a = spawn("trainer", {**spec, "out": str(workdir / f"agree-trainer-{seq}")})
                if len(a["losses"]) != len(b["losses"]) or not a["losses"]:
                    raise SystemExit(f"agreement run logged {len(a['losses'])} vs {len(b['losses'])} losses")
                gaps = [abs(x - y) for x, y in zip(a["losses"], b["losses"], strict=True)]
                agreement = {"steps": len(gaps), "trainer": a["losses"], "mlmkit": b["losses"],
                             "max_abs_diff": max(gaps), "tolerance": AGREEMENT_TOLERANCE[precision]}
            plans.append((seq, batch, results, agreement))
    peak = max(peak_before, matmul_peak(args.device, args.bf16))

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    for seq, batch, results, agreement in plans:
        header = [
            f"[bold]pretrain throughput[/]: {info['label']}, {info['params'] / 1e6:.1f}M params, "
            f"seq {seq}, batch {batch}, {steps} steps, {args.rounds} rounds (a/b alternating), {precision}"
            f"{', (b) with train.compile=true' if args.compile else ''}"
            f"{', (b) with train.fast_dropout=false' if args.no_fast_dropout else ''}"
            f"{', (b) with model.sparse_last_layer=false' if args.no_sparse_last_layer else ''}; "
            f"steady rates leave out the first "
            f"{warm} step(s)",
            f"device: {device_name}; matmul peak ({precision}) measured by this script: {peak / 1e9:,.1f} GFLOP/s",
        ]
        rows = {}
        if results["trainer"]:
            info["predicted_share"] = statistics.mean(r["predicted_share"] for r in results["trainer"])
            rows = {k: summarize(v, info, seq, args.device == "cpu") for k, v in results.items()}
            first = results["trainer"][0]
            peaks = sorted(p for r in results.values() for x in r for p in [x["matmul_peak"]])
            header += [
                f"matmul peak in each run's own process: {peaks[0] / 1e9:,.0f}-{peaks[-1] / 1e9:,.0f} GFLOP/s "
                f"(MFU below is per run against its own peak; median over runs)",
                f"trainer: optimizer {first['optimizer']}, attention {first['attn']}; predicted positions "
                f"{100 * info['predicted_share']:.1f}% of tokens; model FLOPs/token: useful "
                f"{flops_per_step(info, seq, 1, info['predicted_share']) / 1e6:.1f}M, "
                f"with the head on every position {flops_per_step(info, seq, 1, 1) / 1e6:.1f}M",
                f"mlmkit: sparse head; last layer only at predicted positions: "
                f"{'yes' if results['mlmkit'][0].get('sparse_last_layer') else 'no'}; fast CPU dropout: "
                f"{'no' if args.no_fast_dropout or args.compile or args.device != 'cpu' else 'yes'}",
            ]
        print_report(header, rows, agreement, "median step" if args.device == "cpu" else "steady mean")
        all_results["runs"][str(seq)] = {"batch": batch, "results": results, "summary": rows,
                                         "agreement": agreement}
    all_results.update({"model": info, "matmul_peak_flops": peak, "wall_seconds": time.perf_counter() - started})
    print(f"benchmark wall time {time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(all_results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
