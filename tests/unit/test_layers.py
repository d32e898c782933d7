"""The packages import one way only (the layers of ARCHITECTURE.md, declared in ``.importlinter``).

``make lint`` runs the same contract; running it here too means CI (``make test``) checks it.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _contract_layers() -> list[str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / ".importlinter")
    return [line.strip() for line in parser["importlinter:contract:layers"]["layers"].splitlines() if line.strip()]


def test_every_package_has_a_layer():
    named = {name.strip() for layer in _contract_layers() for name in layer.replace("|", ":").split(":")}
    packages = {f"mlmkit.{p.stem}" for p in (ROOT / "src" / "mlmkit").iterdir()
                if (p / "__init__.py").is_file() or (p.suffix == ".py" and p.stem not in ("__init__", "__main__"))}
    assert packages <= named, f"packages without a layer in .importlinter: {sorted(packages - named)}"


def test_imports_follow_the_layers():
    linter = Path(sys.executable).with_name("lint-imports")
    if not linter.exists():
        pytest.skip("import-linter is not installed (it comes with the dev extra)")
    result = subprocess.run([str(linter), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
