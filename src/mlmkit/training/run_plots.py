"""Pictures of runs with matplotlib (Agg canvas, no display needed).

Every run writes ``training_curves.png``: loss, held-out accuracy, learning rate and masking ratio
over optimizer steps, read from ``metrics.jsonl``. ``mlmkit plot`` overlays several runs in the
same panels, one colour per run.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlmkit.errors import UserError
from mlmkit.training.run_summary import latest_by_step, read_run_metrics

CURVES_FILE = "training_curves.png"

#: (panel title, y label, [(split, metrics key, series name)]); panels without data are left out
PANELS: tuple[tuple[str, str, tuple[tuple[str, str, str], ...]], ...] = (
    ("Loss", "cross-entropy (nats)", (("train", "loss", "train"), ("eval", "eval_loss", "held-out"))),
    ("Held-out accuracy", "accuracy", (("eval", "masked_accuracy", "masked tokens"), ("eval", "accuracy", "accuracy"),
                                       ("eval", "macro_f1", "macro-F1"))),
    ("Learning rate", "learning rate", (("train", "lr", "learning rate"),)),
    ("Masking ratio", "share of tokens predicted", (("train", "mask_ratio", "schedule"),
                                                    ("train", "realized_ratio", "realized"))),
)
#: line styles of the series of a panel (evaluation points also get markers)
_STYLES = ({"linestyle": "-"}, {"linestyle": "--"}, {"linestyle": ":"})


def _series(records: list[dict[str, Any]], split: str, key: str) -> tuple[list[int], list[float]]:
    points = [(int(r["step"]), float(r[key])) for r in latest_by_step(records, split)
              if isinstance(r.get(key), int | float)]
    return [p[0] for p in points], [p[1] for p in points]


def draw_runs(runs: Sequence[tuple[str, list[dict[str, Any]]]], title: str | None = None) -> Any:
    """A matplotlib ``Figure`` (Agg canvas) of ``(label, metrics records)`` pairs, one colour per run.

    Raises:
        UserError: When the runs hold no curve to draw.
    """
    # lazy: matplotlib is heavy and only plotting needs it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [(t, y, [(name, s, k) for s, k, name in series
                      if any(_series(records, s, k)[0] for _, records in runs)]) for t, y, series in PANELS]
    panels = [p for p in panels if p[2]]
    if not panels:
        raise UserError("nothing to plot: the metrics hold no training or evaluation lines yet")
    fig = Figure(figsize=(11, 7.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2).ravel() if len(panels) > 2 else fig.subplots(1, len(panels), squeeze=False).ravel()
    for ax, (panel_title, ylabel, series) in zip(axes, panels, strict=False):
        for index, (label, records) in enumerate(runs):
            for (name, split, key), style in zip(series, _STYLES, strict=False):
                steps, values = _series(records, split, key)
                if steps:
                    tag = label if len(series) == 1 else (f"{label}: {name}" if len(runs) > 1 else name)
                    markers = {"marker": "o", "markersize": 3} if split == "eval" else {}
                    ax.plot(steps, values, color=f"C{index % 10}", label=tag, **{**style, **markers})
        ax.set_title(panel_title)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if panel_title == "Learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        if len(series) > 1 or len(runs) > 1:
            ax.legend(fontsize="small")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return fig


def plot_runs(runs: Sequence[tuple[str, list[dict[str, Any]]]], output: str | Path, title: str | None = None) -> Path:
    """Draw ``(label, metrics records)`` pairs with :func:`draw_runs` and save the picture to ``output``.

    The file appears atomically (written under a temporary name, then renamed); its format follows
    the extension (png, svg, pdf, ...).

    Raises:
        UserError: For an extension matplotlib cannot write, or runs without any curve to draw.
    """
    target = Path(output).expanduser()
    fmt = target.suffix.lstrip(".").lower()
    fig = draw_runs(runs, title=title)
    formats = sorted(fig.canvas.get_supported_filetypes())
    if fmt not in formats:
        raise UserError(f"cannot write {target.name}: the file name must end in one of .{', .'.join(formats)}")
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=target.suffix, prefix=f".{target.stem}.")
    os.close(fd)
    try:
        fig.savefig(tmp, format=fmt)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return target


def plot_run_dirs(run_dirs: Sequence[str | Path], output: str | Path, labels: Sequence[str] | None = None,
                  title: str | None = None) -> Path:
    """``mlmkit plot``: overlay the curves of several run directories, labelled by directory or ``labels``."""
    dirs = [Path(d).expanduser() for d in run_dirs]
    if labels is not None and len(labels) != len(dirs):
        raise UserError(f"--labels gives {len(labels)} name(s) for {len(dirs)} run(s)")
    missing = [str(d) for d in dirs if not (d / "metrics.jsonl").is_file()]
    if missing:
        raise UserError(f"no metrics.jsonl in {missing[0]} (not an mlmkit run directory)")
    if not Path(output).expanduser().parent.is_dir():
        raise UserError(f"the folder of {output} does not exist")
    names = list(labels) if labels is not None else _short_names(dirs)
    return plot_runs([(name, read_run_metrics(d / "metrics.jsonl")) for name, d in zip(names, dirs, strict=True)],
                     output, title=title)


def _short_names(dirs: Sequence[Path]) -> list[str]:
    """Directory names, with parents added until they tell the runs apart."""
    parts = [d.resolve().parts for d in dirs]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(d) for d in dirs]


def write_training_curves(run_dir: str | Path) -> Path:
    """``<run_dir>/training_curves.png`` from the run's own ``metrics.jsonl``."""
    run = Path(run_dir).expanduser()
    return plot_run_dirs([run], run / CURVES_FILE, title=f"{run.name}: training curves")
