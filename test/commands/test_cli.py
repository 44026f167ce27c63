"""The ``modseg`` console script behaves as a CLI should."""
import subprocess
import sys


def modseg(*args):
    return subprocess.run([sys.executable, "-m", "modseg_ros.cli", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_commands_and_exits_zero():
    result = modseg("--help")
    assert result.returncode == 0
    assert "usage: modseg" in result.stdout and "info" in result.stdout


def test_no_command_prints_usage_and_fails():
    result = modseg()
    assert result.returncode == 2
    assert "usage: modseg" in result.stderr


def test_unknown_command_names_it_and_fails():
    result = modseg("frobnicate")
    assert result.returncode == 2
    assert "unknown command 'frobnicate'" in result.stderr
    assert result.stdout == ""


def test_unknown_option_of_a_command_fails_with_usage():
    result = modseg("info", "--no-such-option")
    assert result.returncode == 2
    assert "usage: modseg info" in result.stderr and "--no-such-option" in result.stderr


def test_command_help_exits_zero():
    result = modseg("info", "--help")
    assert result.returncode == 0 and "usage: modseg info" in result.stdout


def test_console_script_is_installed_and_reports_the_environment():
    from pathlib import Path

    script = Path(sys.executable).parent / "modseg"
    result = subprocess.run([str(script), "info", "--messages"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "ROS_AUTOMATIC_DISCOVERY_RANGE = LOCALHOST" in result.stdout
    assert "SegmentationInfo: ok" in result.stdout
