"""Masking throughput of every built-in strategy against Hugging Face's DataCollatorForLanguageModeling.

Not a test: it prints a table of ratios measured in one run, on this machine.

* Batches: 64 x 512 tokens of real text (the packaged tweets, packed into 512-token
  blocks) tokenized by the packaged MiniLM-L6-H384 WordPiece tokenizer.
* Baselines, same batch, same run: ``DataCollatorForLanguageModeling.torch_mask_tokens``
  with ``mlm_probability=0.15``, random tokens and ``whole_word_mask=True`` (transformers 5
  derives words from the ``offset_mapping`` it is given, and forces 100% [MASK]).
* Our time is the strategy call on a padded batch (``strategy(batch, ratio, generator)``:
  select + corrupt); per-token features (word ids, POS ids, n-gram units) were computed
  once at data preparation, as in training. HF whole-word recomputes words per batch.
* Share of a training step: the demo setting, MiniLM-L6-H384 with the sparse MLM head on
  64 x 64 batches; a forward + backward is timed and compared with masking the same batch.

Run:  python benchmarks/masking_throughput.py [--docs 2500] [--repeats 10]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets  # noqa: E402
import torch  # noqa: E402
from transformers import AutoTokenizer, DataCollatorForLanguageModeling  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from mlmkit.data.embedded import embedded_model_dir, read_embedded_tweets  # noqa: E402
from mlmkit.data.packing import pack_blocks, tokenize_corpus  # noqa: E402
from mlmkit.masking.collator import MaskingCollator  # noqa: E402
from mlmkit.masking.registry import _BUILTINS, build_strategy  # noqa: E402

BATCH, LONG, SHORT = 64, 512, 64


def clock() -> float:
    """CPU time of this thread with one torch thread (immune to being descheduled on a busy machine), else wall time."""
    return time.thread_time() if torch.get_num_threads() == 1 else time.perf_counter()


def timed(fn, repeats: int) -> float:
    """Median time of ``fn()`` in seconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)


def interleaved(contenders: dict, repeats: int) -> dict[str, float]:
    """Median time of each contender, timed in rounds (one call each per round, in a shuffled order).

    Rounds spread machine noise (other processes on a shared CPU) evenly over all
    contenders, so their ratios stay meaningful even when absolute times drift; shuffling
    spreads the cache eviction of a memory-hungry contender (HF whole-word) over the others.
    """
    for fn in contenders.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    shuffler = random.Random(0)
    for _ in range(repeats):
        shuffler.shuffle(names)
        for name in names:
            start = clock()
            contenders[name]()
            times[name].append(clock() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def masking_call(strategy, batch: dict[str, torch.Tensor]):
    """A masking call with a fresh seed each time, as each training step has."""
    seeds = iter(range(10**9))
    return lambda: strategy(batch, 0.15, torch.Generator().manual_seed(next(seeds)))


def specs(tokenizer, texts: list[str], workdir: Path) -> dict[str, dict]:
    """A masking spec for every built-in strategy, building the data some of them need."""
    out = {name: {"name": name} for name in sorted(_BUILTINS)}
    if "token_weighted" in out:
        from mlmkit.masking.token_weighted import build_token_weights_from_texts, save_token_weights

        weights, stats = build_token_weights_from_texts(texts, tokenizer)
        path = save_token_weights(workdir / "weights.safetensors", weights, stats)
        out["token_weighted"]["weights_file"] = str(path)
    if "pmi" in out:
        from mlmkit.masking.pmi_vocab import build_pmi_vocabulary

        vocab = build_pmi_vocabulary(texts, tokenizer, max_n=5, min_count=5, size=20_000)
        out["pmi"]["vocab"] = str(vocab.save(workdir / "pmi-vocab.json"))
    if "mixture" in out:
        out["mixture"]["strategies"] = [{"name": "span", "weight": 0.5}, {"name": "random", "weight": 0.5}]
    return out


def hf_batch(tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(input_ids, special_tokens_mask, offset_mapping)`` of 64 packed 512-token blocks, for HF's collator."""
    enc = tokenizer(texts, return_offsets_mapping=True, return_special_tokens_mask=True, verbose=False)
    ids = [t for doc in enc["input_ids"] for t in doc]
    special = [t for doc in enc["special_tokens_mask"] for t in doc]
    offsets = [o for doc in enc["offset_mapping"] for o in doc]
    need = BATCH * LONG
    if len(ids) < need:
        raise SystemExit(f"only {len(ids)} tokens; raise --docs")
    return (torch.tensor(ids[:need]).view(BATCH, LONG), torch.tensor(special[:need]).view(BATCH, LONG),
            torch.tensor(offsets[:need]).view(BATCH, LONG, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2500, help="tweets to read (enough for 64 x 512 tokens)")
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds (median)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: masking tensors are too small to gain from more; "
                             "with one thread the thread's CPU time is measured, robust on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    torch.manual_seed(0)

    model_dir = embedded_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    texts = read_embedded_tweets()["text"][: args.docs]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {len(texts)} tweets; "
          f"batches {BATCH} x {LONG} (throughput) and {BATCH} x {SHORT} (training-step share)")

    # ---- Hugging Face baselines on the same text
    input_ids, special, offsets = hf_batch(tokenizer, texts)
    hf_random = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=0)
    hf_random.create_rng("pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Random token replacement is not supported with whole word masking"
        hf_wwm = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, whole_word_mask=True, seed=0)
    hf_wwm.create_rng("pt")
    contenders_long = {
        "HF random": lambda: hf_random.torch_mask_tokens(input_ids.clone(), special.clone()),
        "HF whole-word": lambda: hf_wwm.torch_mask_tokens(input_ids.clone(), special.clone(), offsets),
    }
    contenders_short = {}

    # ---- our strategies, prepared as training prepares them (features once, then packed)
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in specs(tokenizer, texts, Path(tmp)).items():
            strategy = build_strategy(spec)
            collator = MaskingCollator(tokenizer, strategy, seed=0)
            tokenized = tokenize_corpus(datasets.Dataset.from_dict({"text": texts}), tokenizer, strategy)
            for length, contenders in ((LONG, contenders_long), (SHORT, contenders_short)):
                blocks = pack_blocks(tokenized, length, strategy.group_features)
                full = [b for b in blocks.select(range(min(len(blocks), 4 * BATCH))).to_list()
                        if len(b["input_ids"]) == length][:BATCH]
                if len(full) < BATCH:
                    raise SystemExit(f"only {len(full)} blocks of {length}; raise --docs")
                contenders[name] = masking_call(strategy, collator.pad(full))
    long_times = interleaved(contenders_long, args.repeats)
    short_times = interleaved(contenders_short, args.repeats)
    t_hf_random, t_hf_wwm = long_times.pop("HF random"), long_times.pop("HF whole-word")

    # ---- one training step of the demo model (forward + backward, sparse head)
    from transformers import AutoModelForMaskedLM

    from mlmkit.modeling.sparse_head import SparseMLM

    model = SparseMLM(AutoModelForMaskedLM.from_pretrained(str(model_dir)), sparse=True).train()
    step_collator = MaskingCollator(tokenizer, build_strategy({"name": "random"}), seed=0)
    step_batch = step_collator.mask({"input_ids": input_ids[:, :SHORT].clone(),
                                     "attention_mask": torch.ones(BATCH, SHORT, dtype=torch.long),
                                     "special_tokens_mask": special[:, :SHORT].bool(),
                                     "word_ids": torch.arange(SHORT).repeat(BATCH, 1)}, step=0)

    def train_step():
        model.zero_grad(set_to_none=True)
        model(**step_batch)["loss"].backward()

    t_step = timed(train_step, 5)

    # ---- report
    print()
    print(f"Hugging Face random      : {t_hf_random * 1e3:8.2f} ms per {BATCH}x{LONG} batch")
    print(f"Hugging Face whole-word  : {t_hf_wwm * 1e3:8.2f} ms per {BATCH}x{LONG} batch")
    print(f"demo training step (MiniLM-L6-H384, sparse head, fwd+bwd, {BATCH}x{SHORT}): {t_step * 1e3:8.1f} ms")
    print()
    header = (f"{'strategy':<15} {'ms/batch':>9} {'Mtok/s':>7} {'x HF random':>11} {'x HF wwm':>9} "
              f"{'ms 64x64':>9} {'% of step':>9}  targets")
    print(header)
    print("-" * len(header))
    for name, t_long in long_times.items():
        t_short = short_times[name]
        vs_random, vs_wwm, share = t_hf_random / t_long, t_hf_wwm / t_long, 100 * t_short / t_step
        checks = [f"{'ok' if vs_random >= 0.5 else 'MISS'} >=0.5x random",
                  f"{'ok' if share < 5 else 'MISS'} <5% step"]
        if name == "whole_word":
            checks.insert(0, f"{'ok' if vs_wwm >= 3 else 'MISS'} >=3x HF wwm")
        print(f"{name:<15} {t_long * 1e3:9.2f} {BATCH * LONG / t_long / 1e6:7.2f} {vs_random:11.2f} {vs_wwm:9.1f} "
              f"{t_short * 1e3:9.2f} {share:9.2f}  {', '.join(checks)}")
    print()
    clock_name = "thread CPU time" if torch.get_num_threads() == 1 else "wall time"
    print("x HF random / x HF wwm: speed relative to the baseline (higher is faster). Medians of "
          f"{args.repeats} interleaved rounds of {clock_name}; on a shared CPU expect noise between runs.")


if __name__ == "__main__":
    main()
