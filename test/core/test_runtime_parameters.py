"""Parameter changes at run time without ROS: which may change, how they are validated and applied."""
import pytest

from modseg_ros.core.config import NodeConfig, declared_parameters
from modseg_ros.core.perception import Perception
from modseg_ros.core.runtime_parameters import apply, changed, runtime_keys
from modseg_ros.core.types import Modality
from modseg_ros.errors import ConfigError


class _Engine:
    name = "none"
    input_size = (32, 64)


def test_thresholds_change_and_take_effect_in_the_modules_that_read_them():
    config = NodeConfig.load()
    perception = Perception(config, _Engine())
    new = changed(config, {"health.lidar.min_points": 5000, "health.lidar.timeout_s": 0.5, "outputs.overlay_alpha": 0.2,
                           "health.consistency.enter_s": 2.0, "health.motion_agreement.max_still_share": 0.35})  # fmt: skip
    apply(perception, new)
    assert perception.health.config.lidar.min_points == 5000
    assert perception.health._streams[Modality.LIDAR].limits.timeout_ns == 500_000_000
    assert perception.config.outputs.overlay_alpha == 0.2
    # enter_s is shared by the three cross-checks
    assert perception.consistency.settings.enter_s == perception.range_agreement.settings.enter_s == 2.0
    assert perception.motion_agreement.settings.enter_s == 2.0 and perception.motion_agreement.settings.max_still_share == 0.35
    assert new.parameters["health.lidar.min_points"] == 5000 and config.parameters["health.lidar.min_points"] == 100


@pytest.mark.parametrize(("changes", "reason"), [
    ({"rig.lidar.xyz": [0.0, 0.0, 2.0]}, "changing 'rig.lidar.xyz' needs a restart"),
    ({"model.threads": 4}, "changing 'model.threads' needs a restart"),
    ({"health.camera.warn_fraction": 2.0}, "parameter 'health.camera.warn_fraction' must be <= 1"),
    ({"health.lidar.error_rate_hz": 9.0}, "'health.lidar.error_rate_hz' (9) must not exceed 'health.lidar.warn_rate_hz' (7)"),
    ({"health.motion_agreement.exclude_still_share": 0.1}, "'health.motion_agreement.exclude_still_share' must be at least"),
    ({"no.such": 1}, "unknown parameter 'no.such'"),
])  # fmt: skip
def test_changes_that_need_a_restart_or_are_invalid_are_refused_with_the_reason(changes, reason):
    with pytest.raises(ConfigError) as err:
        changed(NodeConfig.load(), changes)
    assert reason in str(err.value)


def test_run_time_parameters_are_thresholds_only():
    keys = runtime_keys()
    assert {"health.lidar.min_points", "health.camera.timeout_s", "outputs.overlay_alpha"} <= keys
    assert not any(k.startswith(("rig.", "topics.", "inputs.", "sync.", "model.", "encoding.")) for k in keys)
    assert all(k in {p.key for p in declared_parameters()} for k in keys)


def test_the_docs_list_exactly_the_parameters_that_change_at_run_time():
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "node.md").read_text()
    section = page.split("\n## Changing parameters at run time\n")[1].split("\n## ")[0]
    listed = set()
    for name in re.findall(r"`(health\.[^`]+|outputs\.[^`]+)`", section.split("changing it needs a restart.")[1]):
        listed |= {name.replace("<sensor>", m.value) for m in Modality}
    assert listed == set(runtime_keys())


def test_the_generated_parameter_table_marks_the_run_time_parameters():
    from modseg_ros.core.config import default_parameters
    from modseg_ros.core.params import parameter_table

    table = parameter_table(declared_parameters(), default_parameters())
    assert "| `health.lidar.min_points` | `100` | >= 0 | fewer returns: ERROR | yes |" in table
    assert "| `model.threads` | `1` | >= 0 | intra-op threads; 0 keeps the library default |  |" in table
