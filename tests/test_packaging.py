"""What a lab sees of the package itself: its version, its licence, its entry points."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import dineuro

ROOT = Path(__file__).resolve().parents[1]


def test_version_is_the_installed_distributions():
    done = subprocess.run([sys.executable, "-m", "dineuro", "--version"], capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == f"dineuro {version('dineuro')}"
    assert dineuro.__version__ == version("dineuro")


def test_python_dash_m_runs_the_command_line():
    done = subprocess.run([sys.executable, "-m", "dineuro", "--help"], capture_output=True,
                          text=True, check=True)
    for command in ("run", "predict", "trace", "demo", "evaluate"):
        assert f" {command} " in done.stdout


def test_the_licence_file_is_the_licence_the_metadata_declares():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    licence = (ROOT / "LICENSE").read_text()
    assert project["license"] == "MIT" and licence.startswith("MIT License")
    assert "Permission is hereby granted, free of charge" in licence
    assert f"License :: OSI Approved :: {project['license']} License" not in project.get(
        "classifiers", []), "PEP 639: the licence expression replaces licence classifiers"
