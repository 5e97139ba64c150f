"""The layer contracts in pyproject.toml hold, and they would catch a breach.

`.ci/run` and `make lint` run `lint-imports` on the tree; these tests also show that a deliberate violation in
a copy of the tree fails it, so the contracts cannot silently stop checking anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "models",
    "providers",
    "blocks",
    "inbox",
    "messaging",
    "bookings",
    "campaigns",
    "reporting",
    "access",
    "operations",
    "flows",
    "console",
    "webhook_gateway",
    "deployments",
    "tests",
)
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(tree / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_its_layers(tree_copy: Path) -> None:
    result = _lint(tree_copy)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("models/settings.py", "import messaging.outbox", "Layers"),
        ("providers/mobilemessage.py", "import webhook_gateway.app", "Layers"),
        ("messaging/outbox.py", "import deployments.cli", "Layers"),
        ("deployments/demo.py", "import tests.servers", "Production code never imports the tests"),
    ],
)
def test_a_deliberate_violation_fails(tree_copy: Path, module: str, line: str, broken: str) -> None:
    target = tree_copy / module
    target.write_text(target.read_text() + f"\n{line}  # deliberate violation\n")
    result = _lint(tree_copy)
    assert result.returncode != 0
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout
