"""Small promises of the pre-training loop and its checkpoints, found untested by mutation testing."""

import errno
import io

import pytest
from rich.console import Console

from mlmkit.errors import UserError
from mlmkit.training.checkpoint import TrainerState, save_checkpoint
from mlmkit.training.pretrain import _warner


class FullDisk:
    """Just enough of Accelerator for save_checkpoint, failing like a full disk."""

    is_main_process = True

    def wait_for_everyone(self):
        pass

    def save_state(self, directory, safe_serialization=True):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_checkpoint_names_the_reason_without_the_errno_prefix(tmp_path):
    with pytest.raises(UserError) as caught:
        save_checkpoint(FullDisk(), tmp_path, TrainerState(step=3), "a: 1\n", keep=2)
    message = str(caught.value)
    assert "step-00000003 (No space left on device); earlier checkpoints are intact" in message
    assert "Errno" not in message


def test_warnings_print_the_text_as_it_is():
    out = io.StringIO()
    _warner(Console(file=out, width=200, color_system=None))("model [dir] at /tmp/[x]")
    assert out.getvalue() == "model [dir] at /tmp/[x]\n"  # brackets are not read as rich markup
