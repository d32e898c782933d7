"""The run directory's files; they live in :mod:`mlmkit.io.outputs`, which every layer may use."""

from mlmkit.io.outputs import (
    MetricsLog,
    prepare_output_dir,
    read_metrics,
    restores_replaced_output,
    save_pretrained_atomic,
    write_text_atomic,
)

__all__ = ["MetricsLog", "prepare_output_dir", "read_metrics", "restores_replaced_output",
           "save_pretrained_atomic", "write_text_atomic"]
