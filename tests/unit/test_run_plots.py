import struct

import pytest

from made_runs import make_finetune_run, make_pretrain_run
from mlmkit.errors import UserError
from mlmkit.io.outputs import read_metrics
from mlmkit.training.run_plots import CURVES_FILE, draw_runs, plot_run_dirs, write_training_curves


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _lines(fig):
    return {ax.get_title(): [(line.get_label(), list(line.get_xdata()), list(line.get_ydata()))
                             for line in ax.get_lines()] for ax in fig.axes if ax.get_visible()}


@pytest.mark.slow
def test_training_curves_png_is_a_valid_picture(tmp_path):
    import matplotlib.image

    run = make_pretrain_run(tmp_path / "mlm")
    path = write_training_curves(run)
    assert path == run / CURVES_FILE
    assert _png_size(path) == (1100, 750)
    pixels = matplotlib.image.imread(path)
    assert pixels.shape == (750, 1100, 4) and pixels.std() > 0.05  # decodes, and is not a blank canvas
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_pretrain_panels_hold_the_logged_values(tmp_path):
    run = make_pretrain_run(tmp_path / "mlm")
    lines = _lines(draw_runs([("mlm", read_metrics(run / "metrics.jsonl"))]))
    assert list(lines) == ["Loss", "Held-out accuracy", "Learning rate", "Masking ratio"]
    assert lines["Loss"] == [("train", [1, 10, 20], [5.0, 4.0, 3.25]), ("held-out", [0, 10, 20], [6.0, 4.0, 3.0])]
    assert lines["Held-out accuracy"] == [("mlm", [0, 10, 20], [0.05, 0.2, 0.3125])]
    assert lines["Learning rate"] == [("mlm", [1, 10, 20], [1e-4, 5e-4, 0.0])]


def test_resumed_runs_plot_the_last_line_of_each_step(tmp_path):
    records = [{"step": 1, "split": "train", "loss": 5.0}, {"step": 2, "split": "train", "loss": 9.0},
               {"step": 2, "split": "train", "loss": 4.0}, {"step": 3, "split": "train", "loss": 3.0}]
    assert _lines(draw_runs([("r", records)]))["Loss"] == [("r", [1, 2, 3], [5.0, 4.0, 3.0])]


def test_finetune_runs_have_no_masking_panel(tmp_path):
    run = make_finetune_run(tmp_path / "ft", model="embedded", accuracy=0.75)
    lines = _lines(draw_runs([("ft", read_metrics(run / "metrics.jsonl"))]))
    assert list(lines) == ["Loss", "Held-out accuracy", "Learning rate"]
    assert lines["Held-out accuracy"] == [("accuracy", [30], [0.75]), ("macro-F1", [30], [0.7])]


@pytest.mark.slow
def test_overlay_of_two_runs_with_labels(tmp_path):
    a = make_pretrain_run(tmp_path / "a" / "mlm")
    b = make_pretrain_run(tmp_path / "b" / "mlm", strategy="whole_word")
    out = plot_run_dirs([a, b], tmp_path / "both.png", labels=["span", "whole word"])
    assert _png_size(out) == (1100, 750)
    fig = draw_runs([("span", read_metrics(a / "metrics.jsonl")), ("whole word", read_metrics(b / "metrics.jsonl"))])
    labels = [label for label, _, _ in _lines(fig)["Loss"]]
    assert labels == ["span: train", "span: held-out", "whole word: train", "whole word: held-out"]
    colors = {line.get_label(): line.get_color() for line in fig.axes[0].get_lines()}
    assert colors["span: train"] == colors["span: held-out"] != colors["whole word: train"]


def test_default_labels_tell_same_named_runs_apart(tmp_path):
    from mlmkit.training.run_plots import _short_names

    assert _short_names([tmp_path / "a" / "mlm", tmp_path / "b" / "mlm"]) == ["a/mlm", "b/mlm"]
    assert _short_names([tmp_path / "x", tmp_path / "y"]) == ["x", "y"]


@pytest.mark.slow
def test_other_formats_follow_the_extension(tmp_path):
    run = make_pretrain_run(tmp_path / "mlm")
    assert plot_run_dirs([run], tmp_path / "curves.svg").read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize("kwargs, message", [
    ({"labels": ["one", "two"]}, "gives 2 name"),
    ({"output": "curves.nope"}, "must end in one of"),
    ({"output": "no/such/folder/c.png"}, "does not exist"),
])
def test_plot_user_errors(tmp_path, kwargs, message):
    run = make_pretrain_run(tmp_path / "mlm")
    kwargs = dict(kwargs)  # the parameters are shared by every run of the test in this process
    output = tmp_path / kwargs.pop("output", "c.png")
    with pytest.raises(UserError, match=message):
        plot_run_dirs([run], output, **kwargs)


def test_not_a_run_directory(tmp_path):
    with pytest.raises(UserError, match="no metrics.jsonl"):
        plot_run_dirs([tmp_path], tmp_path / "c.png")
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(UserError, match="nothing to plot"):
        plot_run_dirs([tmp_path], tmp_path / "c.png")
