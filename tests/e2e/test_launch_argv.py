"""A training command asked for several processes hands the workers the command line as the user typed it."""

from typer.testing import CliRunner

from mlmkit.cli import pretrain as pretrain_cli
from mlmkit.cli.app import app


def test_workers_get_the_typed_arguments_without_the_launch_options(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(pretrain_cli, "LAUNCHER", lambda cmd: seen.append(cmd) or 0)
    typed = ["pretrain", "-r", "demo", "train.max_steps=5", "--num-processes", "2", "--main-process-port=29999",
             f"output.dir={tmp_path}", "--resume", "auto", "--accelerate-config", "none.yaml", "--json"]
    result = CliRunner().invoke(app, typed)
    assert result.exit_code == 0, result.output
    (cmd,) = seen
    # the user's own spelling (short options, option order) reaches the workers; the launcher's options do not
    assert cmd[cmd.index("mlmkit") + 1:] == ["pretrain", "-r", "demo", "train.max_steps=5", f"output.dir={tmp_path}",
                                             "--resume", "auto", "--json"]
    assert cmd[cmd.index("--main_process_port") + 1] == "29999" and cmd[cmd.index("--config_file") + 1] == "none.yaml"


def test_finetune_commands_forward_their_typed_arguments(monkeypatch, tmp_path):
    from mlmkit.cli import finetune as finetune_cli

    seen = []
    monkeypatch.setattr(finetune_cli, "LAUNCHER", lambda cmd: seen.append(cmd) or 0)
    typed = ["finetune", "classify", "--num-processes=2", "-m", "embedded", "-d", "embedded", "-o",
             str(tmp_path / "out"), "--max-steps", "3", "train.lr=1e-4"]
    result = CliRunner().invoke(app, typed)
    assert result.exit_code == 0, result.output
    (cmd,) = seen
    assert cmd[cmd.index("mlmkit") + 1:] == ["finetune", "classify", "-m", "embedded", "-d", "embedded", "-o",
                                             str(tmp_path / "out"), "--max-steps", "3", "train.lr=1e-4"]
    assert cmd[cmd.index("--num_processes") + 1] == "2"


def test_a_launched_pretrain_checks_what_the_workers_would_before_launching(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(pretrain_cli, "LAUNCHER", lambda cmd: seen.append(cmd) or 0)
    for bad, fragment in ((["masking.name=span", "masking.momentum=0.5"], "momentum"),
                          (["data.source=" + str(tmp_path / "missing.txt")], "missing.txt"),
                          (["masking.schedule.name=no-such-schedule"], "no-such-schedule")):
        result = CliRunner().invoke(app, ["pretrain", "-r", "demo", "--num-processes", "2", *bad,
                                          f"output.dir={tmp_path / 'run'}"])
        assert result.exit_code == 2, result.output
        assert "error:" in result.output and fragment in result.output and "Traceback" not in result.output
    assert seen == []  # nothing was launched


def test_a_launched_finetune_checks_its_data_before_launching(monkeypatch, tmp_path):
    from mlmkit.cli import finetune as finetune_cli

    seen = []
    monkeypatch.setattr(finetune_cli, "LAUNCHER", lambda cmd: seen.append(cmd) or 0)
    result = CliRunner().invoke(app, ["finetune", "sentiment", "--num-processes", "2", "-m", "embedded", "-d",
                                      str(tmp_path / "missing.csv"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "missing.csv" in result.output and "Traceback" not in result.output
    assert seen == []
