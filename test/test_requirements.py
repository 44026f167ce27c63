"""The dependency files keep their roles (docs/install.md): the colcon route's file never replaces
parts of a ROS installation, the Kilted and Jazzy sets never mix, and every pin satisfies the
distribution's own requirements (setup.cfg), so that make setup tests what pip users get."""
from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
BUILD_TOOLS = re.compile(r"^(colcon|ament|catkin|rosidl|cmake|ninja|empy|setuptools|wheel)")


def pins(name: str) -> dict[str, str]:
    """{package: version} of a requirements file, following its -r includes."""
    found = {}
    for line in (REPO / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            found.update(pins(line[3:].strip()))
            continue
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{name}: {line} is not pinned"
        found[canonicalize_name(requirement.name)] = spec.version
    return found


def setup_cfg() -> tuple[list[Requirement], dict[str, list[Requirement]]]:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")

    def parse(text: str) -> list[Requirement]:
        return [Requirement(line) for line in text.strip().splitlines() if line.strip()]

    extras = {name: parse(text) for name, text in parser["options.extras_require"].items()}
    return parse(parser["options"]["install_requires"]), extras


def test_colcon_requirements_hold_no_ros_wheels_and_no_build_tools():
    for name in pins("requirements-colcon.txt"):
        assert not name.startswith("ros-"), f"requirements-colcon.txt: {name} would replace part of the ROS installation"
        assert not BUILD_TOOLS.match(name), f"requirements-colcon.txt: {name} is a build tool"
        # numpy and PyYAML come from the ROS installation (package.xml: python3-numpy, python3-yaml)
        assert name not in ("numpy", "pyyaml"), f"requirements-colcon.txt: {name} comes from the ROS installation"


@pytest.mark.parametrize("name, other", [("requirements.txt", "ros-jazzy-"), ("requirements-jazzy.txt", None)])
def test_kilted_and_jazzy_sets_never_mix(name, other):
    ros = [p for p in pins(name) if p.startswith("ros-")]
    assert ros
    if other:  # Kilted: plain ros-* wheels only
        assert not [p for p in ros if p.startswith(other)]
    else:  # Jazzy: ros-jazzy-* wrappers only (each installs ros-X at the Jazzy version)
        assert all(p.startswith("ros-jazzy-") for p in ros), [p for p in ros if not p.startswith("ros-jazzy-")]


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-jazzy.txt"])
def test_pins_satisfy_the_distribution_requirements(name):
    pinned = pins(name)
    install_requires, extras = setup_cfg()
    for requirement in install_requires:  # the runtime is in every make-setup environment
        assert canonicalize_name(requirement.name) in pinned, f"{name} lacks {requirement.name}"
    for requirement in install_requires + [r for reqs in extras.values() for r in reqs]:
        version = pinned.get(canonicalize_name(requirement.name))
        if version is not None:
            assert requirement.specifier.contains(version, prereleases=True), f"{name}: {requirement.name}=={version} outside {requirement}"


def test_every_extra_is_installed_by_make_setup():
    # the whole suite runs in the make-setup environment, so every role's package is pinned there
    pinned = pins("requirements.txt")
    install_requires, extras = setup_cfg()
    for key, requirements in extras.items():
        if key == "ros-jazzy":
            continue
        for requirement in requirements:
            assert canonicalize_name(requirement.name) in pinned, f"extra [{key}]: {requirement.name} not in requirements.txt"


def test_the_runtime_needs_no_torch_and_the_colcon_set_is_the_runtime_with_torch():
    install_requires, extras = setup_cfg()
    runtime = {canonicalize_name(r.name) for r in install_requires}
    torch = {canonicalize_name(r.name) for r in extras["torch"]}
    # the ONNX backend runs on the runtime alone (test/model/test_without_torch.py); torch and the
    # weights' reader are the torch extra, which training needs as well
    assert not runtime & {"torch", "safetensors"}, "install_requires: torch belongs to the torch extra"
    assert {"torch", "safetensors"} <= torch <= {canonicalize_name(r.name) for r in extras["train"]}
    # the colcon route installs both (model.backend: torch, the default), numpy and PyYAML come from ROS
    assert set(pins("requirements-colcon.txt")) == (runtime | torch) - {"numpy", "pyyaml"}
