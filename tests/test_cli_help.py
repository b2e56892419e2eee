"""``python -m <cli> --help`` loads no heavy library, so it answers at once.

An import check rather than a timing: the libraries below take seconds to import (torch alone
about 2 s on a 2-core machine) and a command's help needs none of them. Each module imports them
inside the functions that use them (STYLE.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "open_clip", "faiss", "timm", "matplotlib")
MARK = "HEAVY-MODULES:"
# --help as ``python -m <cli> --help`` runs it, then the heavy modules that got loaded.
PROBE = f"""
import json, runpy, sys
sys.argv = [sys.argv[1], "--help"]
try:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
except SystemExit as stop:
    assert stop.code in (None, 0), stop.code
print({MARK!r} + json.dumps([name for name in {HEAVY!r} if name in sys.modules]))
"""


def command_modules() -> list[str]:
    """Every ``extract.X`` / ``train.X`` module with a click command and a ``__main__`` entry."""
    found = []
    for package in ("extract", "train"):
        for path in sorted((ROOT / package).glob("*.py")):
            text = path.read_text(encoding="utf-8")
            if "@click.command" in text and 'if __name__ == "__main__"' in text:
                found.append(f"{package}.{path.stem}")
    return found


def heavy_modules_loaded(code: str, *args: str) -> list[str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith(MARK)]
    return json.loads(line[len(MARK) :])


def test_every_command_module_is_checked():
    commands = command_modules()
    assert {"extract.run", "extract.verify", "extract.search", "train.run"} <= set(commands)
    assert {"train.protocol", "train.compare", "train.evaluate"} <= set(commands)


@pytest.mark.parametrize("module", command_modules())
def test_help_imports_no_heavy_library(module):
    assert heavy_modules_loaded(PROBE, module) == []


@pytest.mark.parametrize("package", ["extract.store", "extract.datasets"])
def test_store_and_dataset_adapters_stay_light(package):
    code = f"import json, sys, {package}\n"
    code += f"print({MARK!r} + json.dumps([name for name in {HEAVY!r} if name in sys.modules]))"
    assert heavy_modules_loaded(code) == []
