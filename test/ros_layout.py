"""How the ROS 2 command-line tools find a package, its launch files and its executables.

The real tools (ament_index_python, ros2launch, launch_ros, ros2pkg) are not all installable from
PyPI, so these functions restate their lookup rules for the layout tests
(test_install_layout.py for ``make setup``, test_colcon_build.py for a colcon install):

- ament_index_python ``get_package_prefix``: the first directory of AMENT_PREFIX_PATH (those that
  exist) holding the file ``share/ament_index/resource_index/packages/<package>``; the share directory
  is ``<prefix>/share/<package>``.
- ros2launch ``get_share_file_path_from_package`` (``ros2 launch <package> <file>``): the file name
  found by walking the share directory, exactly once.
- launch_ros ``ExecutableInPackage`` (a launch file's ``Node(package=, executable=)``): the libexec
  directory ``<prefix>/lib/<package>`` must exist ("package ... found at ..., but libexec directory
  ... does not exist" otherwise), then ``which(executable, path=libexec)`` (osrf_pycommon's which is
  shutil.which): an executable file directly in it.
- ros2pkg ``get_executable_paths`` (``ros2 pkg executables``, ``ros2 run``): every executable file
  under the libexec directory, sub-directories starting with '.' skipped.
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
from pathlib import Path

PACKAGE = "modseg_ros"
# executable in lib/<package> -> the module whose main() it runs
EXECUTABLES = {"any2seg_node": "modseg_ros.ros.node", "modseg": "modseg_ros.cli"}
SHARE_FILES = ("package.xml", "launch/any2seg.launch.py", "config/any2seg.yaml", "config/carla.yaml",
               "config/fastdds_shm.xml", "rviz/any2seg.rviz", "models/any2seg_b0.safetensors",
               "models/any2seg_b0.json")  # fmt: skip


def search_paths(ament_prefix_path: str) -> list[Path]:
    return [Path(p) for p in ament_prefix_path.split(os.pathsep) if p and os.path.exists(p)]


def package_prefix(package: str, ament_prefix_path: str) -> Path | None:
    for prefix in search_paths(ament_prefix_path):
        if (prefix / "share" / "ament_index" / "resource_index" / "packages" / package).is_file():
            return prefix
    return None


def share_file(prefix: Path, package: str, name: str) -> list[Path]:
    """Every file called ``name`` under the share directory (ros2 launch wants exactly one)."""
    return [Path(root) / name for root, _, files in os.walk(prefix / "share" / package) if name in files]


def libexec_executable(prefix: Path, package: str, executable: str) -> Path:
    libexec = prefix / "lib" / package
    if not libexec.exists():
        raise LookupError(f"package '{package}' found at '{prefix}', but libexec directory '{libexec}' does not exist")
    found = shutil.which(executable, path=str(libexec))
    if found is None:
        raise LookupError(f"executable '{executable}' not found on the libexec directory '{libexec}'")
    return Path(found)


def package_executables(prefix: Path, package: str) -> list[str]:
    """What ``ros2 pkg executables <package>`` lists (the names, relative to lib/<package>)."""
    base = prefix / "lib" / package
    names = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        names += [os.path.relpath(os.path.join(dirpath, f), base) for f in sorted(filenames)
                  if os.access(os.path.join(dirpath, f), os.X_OK)]  # fmt: skip
    return names


def launch_file_executables(launch_file: Path, package: str) -> set[str]:
    """The ``executable=`` of every ``Node(package=<package>, ...)`` call in a Python launch file
    (the package given as the literal or as a module-level constant holding it)."""
    tree = ast.parse(launch_file.read_text())
    constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
                 for t in n.targets if isinstance(t, ast.Name)}  # fmt: skip

    def value(node: ast.AST):
        if isinstance(node, ast.Constant):
            return node.value
        return constants.get(node.id) if isinstance(node, ast.Name) else None

    found = set()
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "id", getattr(call.func, "attr", None)) == "Node":
            kwargs = {k.arg: value(k.value) for k in call.keywords}
            if kwargs.get("package") == package:
                found.add(kwargs.get("executable"))
    return found


def shebang_interpreter(script: Path) -> Path:
    first = script.read_text().splitlines()[0]
    assert first.startswith("#!"), f"{script}: no shebang"
    return Path(first[2:].strip().split()[0])


# Runs a libexec script as its shebang interpreter does, with the module's main() replaced by a
# probe: proves which entry point the script calls, and that the message type support a publisher
# needs first loads, without starting a node. The script's lines before the import of main (the
# make-setup prologue, which may start the process again) run first, unchanged.
ENTRY_PROBE = """
import importlib, sys
script, module = sys.argv[1], sys.argv[2]
head, call, tail = open(script).read().partition(f"from {module} import main")
namespace = {"__name__": "__main__", "__file__": script}
exec(compile(head, script, "exec"), namespace)
target = importlib.import_module(module)

def main(*args):
    from sensor_msgs.msg import Image
    from modseg_ros.msg import SegmentationInfo
    for msg_type in (Image, SegmentationInfo):
        msg_type.__class__.__import_type_support__()
    print("ENTRY", target.__name__, target.__file__)
    return 0

target.main = main
exec(compile(call + tail, script, "exec"), namespace)
"""


def run_entry_probe(script: Path, module: str, env: dict[str, str]) -> str:
    """The probe's output line ("ENTRY <module> <file>"); fails on anything else."""
    interpreter = shebang_interpreter(script)
    assert os.access(interpreter, os.X_OK), f"{script}: interpreter {interpreter} is not executable"
    probe = subprocess.run([str(interpreter), "-c", ENTRY_PROBE, str(script), module], env=env,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-3000:]
    lines = [line for line in probe.stdout.splitlines() if line.startswith("ENTRY ")]
    assert len(lines) == 1 and lines[0].startswith(f"ENTRY {module} "), probe.stdout
    return lines[0]


def check_prefix(prefix: Path, env: dict[str, str]) -> None:
    """The whole layout of one install prefix, as ros2 launch and ros2 pkg resolve it."""
    share = prefix / "share" / PACKAGE
    for name in SHARE_FILES:
        assert (share / name).is_file(), f"{share / name} missing"
    # ros2 launch finds the launch file by its name anywhere under share/<pkg>, and wants it once
    assert share_file(prefix, PACKAGE, "any2seg.launch.py") == [share / "launch" / "any2seg.launch.py"]

    # every node the launch file starts from this package resolves in lib/<pkg>
    wanted = launch_file_executables(share / "launch" / "any2seg.launch.py", PACKAGE)
    assert wanted == {"any2seg_node"}
    assert sorted(package_executables(prefix, PACKAGE)) == sorted(EXECUTABLES)
    for executable, module in EXECUTABLES.items():
        script = libexec_executable(prefix, PACKAGE, executable)
        assert script == prefix / "lib" / PACKAGE / executable
        run_entry_probe(script, module, env)
