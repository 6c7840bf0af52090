"""`python -m pinn operator` reaches pinn.operator_study."""

import subprocess
import sys


def test_operator_subcommand_help():
    r = subprocess.run([sys.executable, "-m", "pinn", "operator", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    assert "python -m pinn operator" in r.stdout and "--dim" in r.stdout


def test_top_level_help_lists_operator():
    r = subprocess.run([sys.executable, "-m", "pinn", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "operator" in r.stdout and "compare" in r.stdout
