"""``modseg demo`` end to end on a short drive: world -> cached bag -> live node -> report."""
from __future__ import annotations

import json

import pytest
from replay_fixtures import modseg


@pytest.mark.slow
def test_demo_generates_once_replays_live_and_reports(tmp_path):
    args = ["demo", "--seconds", "1.5", "--rate", "0.5", "--out", str(tmp_path / "report"), "--cache", str(tmp_path / "cache"),
            "--docs", str(tmp_path / "docs")]  # fmt: skip
    first = modseg(*args)
    assert first.returncode == 0, first.stderr + first.stdout
    assert "generating a 1.5 s night drive" in first.stdout and "demo finished in" in first.stdout
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["mode"] == "live" and report["overall"]["frames_offered"] == 30
    assert report["overall"]["frames_with_mask"] > 0 and report["bags"][0]["condition"] == "night"
    # the 10 s story compressed into 1.5 s
    assert [f["spec"] for f in report["bags"][0]["failures"]] == [
        "camera:underexposure@0.225-0.525s", "camera:blackout@0.525-0.825s", "lidar:silent@0.675-1.05s", "events:burst@1.125-1.35s"]
    for name in ("demo_timeline.png", "demo_panels.png"):
        assert (tmp_path / "docs" / name).stat().st_size > 1000
    second = modseg(*args)
    assert second.returncode == 0 and "reusing the drive" in second.stdout, second.stderr
