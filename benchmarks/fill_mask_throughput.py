"""Fill-mask and PLL throughput of mlmkit against the obvious baselines, measured in one run.

Not a test: it prints the times and ratios it measured, on this machine.

* Fill-mask: the same one-mask texts (packaged tweets, one word in the middle replaced by
  the mask) through ``transformers.pipeline("fill-mask")`` and through
  :func:`mlmkit.inference.fill_mask.fill_mask`, top-5, batch 32, on CPU with the packaged
  MiniLM-L6-H384 (its MLM head is fresh, which changes what it predicts, not how fast).
  The top-5 ids of both are compared before timing.
* PLL: :func:`mlmkit.evaluation.pll.pseudo_log_likelihood` (all masked copies of several
  texts share forward passes, the head runs at the masked position only) against a loop
  that masks one token per forward pass. Both results are compared before timing.
* Each side is timed in rounds, in alternating order, and the median per side is reported:
  on a shared machine, noise then falls on both sides alike. With one torch thread (the
  default) the clock is the thread's CPU time, which other processes do not inflate.

Run:  python benchmarks/fill_mask_throughput.py [--texts 1024] [--pll-texts 24] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from mlmkit.data.embedded import embedded_model_dir, read_embedded_tweets  # noqa: E402
from mlmkit.evaluation.pll import pseudo_log_likelihood  # noqa: E402
from mlmkit.inference.fill_mask import fill_mask  # noqa: E402


def clock() -> float:
    """CPU time of this thread with one torch thread (immune to being descheduled), else wall time."""
    return time.thread_time() if torch.get_num_threads() == 1 else time.perf_counter()


def one_mask_texts(count: int, mask: str) -> list[str]:
    """The first ``count`` tweets of 4 to 40 words, the middle word replaced by the mask."""
    texts = []
    for tweet in read_embedded_tweets()["text"]:
        words = tweet.split()
        if 4 <= len(words) <= 40 and mask not in tweet:
            words[len(words) // 2] = mask
            texts.append(" ".join(words))
        if len(texts) == count:
            return texts
    raise SystemExit(f"only {len(texts)} usable tweets")


def rounds(contenders: dict, repeats: int) -> dict[str, list[float]]:
    """Time each contender once per round, alternating which goes first."""
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            start = clock()
            contenders[name]()
            times[name].append(clock() - start)
    return times


def naive_pll(model, tokenizer, texts: list[str]) -> list[float]:
    """One forward pass per masked token, batch 1, the model's own full logits."""
    totals = []
    with torch.inference_mode():
        for text in texts:
            enc = tokenizer(text, return_tensors="pt", return_special_tokens_mask=True)
            ids = enc["input_ids"][0]
            total = 0.0
            for position in (~enc["special_tokens_mask"][0].bool()).nonzero().flatten().tolist():
                masked = ids.clone()
                masked[position] = tokenizer.mask_token_id
                logits = model(input_ids=masked[None], attention_mask=enc["attention_mask"]).logits[0, position]
                total += torch.log_softmax(logits.float(), dim=-1)[ids[position]].item()
            totals.append(total)
    return totals


def report(title: str, times: dict[str, list[float]], units: int, unit: str, baseline: str, ours: str) -> None:
    print(f"\n{title}")
    for name, values in times.items():
        median = statistics.median(values)
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(f"  {name:<34} median {median:7.2f} s  ({units / median:7.1f} {unit}/s)  rounds: {shown}")
    ratios = [b / o for b, o in zip(times[baseline], times[ours], strict=True)]
    print(f"  ratio (throughput of {ours} / {baseline}): median of medians "
          f"{statistics.median(times[baseline]) / statistics.median(times[ours]):.2f}x; "
          f"per round {', '.join(f'{r:.2f}x' for r in ratios)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1024, help="one-mask tweets for fill-mask")
    parser.add_argument("--pll-texts", type=int, default=24, help="tweets scored by PLL")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per side (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU-time clock)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore")

    path = str(embedded_model_dir())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForMaskedLM.from_pretrained(path).eval()
    texts = one_mask_texts(args.texts, tokenizer.mask_token)
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    print(f"model: packaged MiniLM-L6-H384 ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters), "
          f"CPU, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}")
    print(f"fill-mask: {len(texts)} one-mask tweets, {statistics.mean(lengths):.1f} tokens on average "
          f"(max {max(lengths)}), top-5, batch 32")

    fill = pipeline("fill-mask", model=model, tokenizer=tokenizer, device="cpu")
    with torch.inference_mode():
        reference = fill(texts[:64], top_k=5, batch_size=32)
    ours = fill_mask(model, tokenizer, texts[:64], top_k=5, batch_size=32)
    agree = sum([e["token"] for e in ref] == [c.token_id for c in got.masks[0]]
                for ref, got in zip(reference, ours, strict=True))
    print(f"check: top-5 ids identical to the pipeline's on {agree}/64 texts")

    def run_pipeline():
        with torch.inference_mode():
            fill(texts, top_k=5, batch_size=32)

    def run_mlmkit():
        fill_mask(model, tokenizer, texts, top_k=5, batch_size=32)

    fill_times = rounds({"pipeline('fill-mask')": run_pipeline, "mlmkit fill_mask": run_mlmkit}, args.rounds)
    report("fill-mask, one mask per text", fill_times, len(texts), "texts", "pipeline('fill-mask')",
           "mlmkit fill_mask")

    scored = texts[:args.pll_texts]
    scored = [t.replace(tokenizer.mask_token, "it") for t in scored]
    copies = sum(len(ids) - 2 for ids in tokenizer(scored)["input_ids"])
    batched = [r.pll for r in pseudo_log_likelihood(model, tokenizer, scored, batch_size=64)]
    loop = naive_pll(model, tokenizer, scored)
    worst = max(abs(a - b) for a, b in zip(batched, loop, strict=True))
    print(f"\nPLL: {len(scored)} tweets, {copies} masked copies; largest |PLL difference| to the loop: {worst:.2e}")
    pll_times = rounds({"one token per forward pass": lambda: naive_pll(model, tokenizer, scored),
                        "mlmkit pseudo_log_likelihood": lambda: pseudo_log_likelihood(model, tokenizer, scored,
                                                                                      batch_size=64)},
                       args.rounds)
    report("PLL scoring", pll_times, copies, "copies", "one token per forward pass", "mlmkit pseudo_log_likelihood")


if __name__ == "__main__":
    main()
