"""Progress of long loops; it lives in :mod:`mlmkit.io.progress`, which every layer may use."""

from mlmkit.io.progress import PlainProgress, training_progress

__all__ = ["PlainProgress", "training_progress"]
