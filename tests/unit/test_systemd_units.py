"""The production units (deployments/systemd/, docs/production.md) start programs this checkout installs,
with subcommands and options those programs accept: a typo in a unit would otherwise surface only on a
production host at boot."""

from __future__ import annotations

import configparser
import shlex
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
UNITS = sorted((REPO_ROOT / "deployments" / "systemd").glob("*.service"))
INSTALLED = "/opt/avatar-crm"


def _exec_start(unit: Path) -> list[str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read(unit)
    command = parser["Service"]["ExecStart"].replace("%i", "4200").replace("%H", "host")
    return shlex.split(command)


def test_every_unit_is_described_in_the_production_guide() -> None:
    guide = (REPO_ROOT / "docs" / "production.md").read_text()
    assert len(UNITS) == 8
    for unit in UNITS:
        assert unit.name.replace("@.service", "@") in guide or unit.name in guide, unit.name


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_the_unit_starts_an_installed_program_with_options_it_knows(unit: Path) -> None:
    program, *args = _exec_start(unit)
    assert program.startswith(f"{INSTALLED}/.venv/bin/"), program
    local = REPO_ROOT / program.removeprefix(f"{INSTALLED}/")
    assert local.exists(), local
    subcommand: list[str] = []
    for arg in args:
        if arg.startswith("-"):
            break
        subcommand.append(arg)
    shown = subprocess.run(
        [str(local), *subcommand, "--help"], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    for option in (arg.split("=")[0] for arg in args if arg.startswith("-")):
        assert option in shown.stdout, f"{unit.name}: {option} not in `{' '.join(subcommand)} --help`"
