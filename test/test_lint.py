"""The code lints clean: undefined names, unused imports and variables, syntax errors (pyproject.toml [tool.ruff])."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is not installed (make setup installs it with the test requirements)"
    result = subprocess.run([ruff, "check", "--no-cache", "--output-format", "concise", "modseg_ros", "test", "tools", "launch"],
                            cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
