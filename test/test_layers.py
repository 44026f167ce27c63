"""The package's layers point one way: every import of a modseg_ros module, at module level or inside
a function, goes to the importer's own package or to a lower layer, and no two packages or modules
import each other round a circle. Run as a script to print the package graph:

    python test/test_layers.py
"""
from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "modseg_ros"

# Low -> high. A package may import its own modules and any package of a lower layer; packages of
# one layer are peers and import none of each other. ``msg`` is the message code rosidl generates.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "paths", "msg"),
    ("core",),  # types, geometry, sync, health and its cross-checks, encodings, the perception pipeline and its loop
    ("data",),  # datasets, bags, playback, failure injection, the embedded world (ROS-free)
    ("model",),  # networks, checkpoints, runtimes, training (reads data's datasets)
    ("eval",),  # metrics over datasets and replays, the offline replay
    ("ros",),  # rclpy: the node, the player, the live replay
    ("bench", "demo"),
    ("commands",),
    ("cli",),
)
LAYER_OF = {package: level for level, packages in enumerate(LAYERS) for package in packages}
# rclpy and the ROS message packages: only ``ros`` and the layers above it import them
ROS_PACKAGES = ("rclpy", "rosidl_runtime_py", "builtin_interfaces", "diagnostic_msgs", "geometry_msgs", "rosgraph_msgs",
                "sensor_msgs", "std_msgs", "tf2_msgs")  # fmt: skip


def module_name(path: Path) -> str:
    """modseg_ros/core/sync.py -> modseg_ros.core.sync; a package's __init__.py or folder -> the package."""
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> set[str]:
    """Every module name ``path`` imports anywhere in its body (``from x import y``: ``x`` and ``x.y``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def imports(path: Path) -> set[str]:
    """The modseg_ros modules ``path`` imports (``from x import y``: ``x.y`` when that is a module)."""
    return {m for m in imported_names(path) if m.startswith("modseg_ros.") and m in MODULES}


def _known_modules() -> set[str]:
    known = {module_name(p) for p in ROOT.rglob("*.py")}
    return known | {"modseg_ros.msg"}  # generated, installed beside the sources


MODULES = _known_modules()


def package_of(module: str) -> str:
    return module.split(".")[1]


def module_graph() -> dict[str, set[str]]:
    """module -> the modseg_ros modules it imports (parent packages of a module are not edges)."""
    graph = {}
    for path in sorted(ROOT.rglob("*.py")):
        name = module_name(path)
        graph[name] = {m for m in imports(path) if m != name and not name.startswith(m + ".") and not m.startswith(name + ".")}
    return graph


def package_graph(graph: dict[str, set[str]]) -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> the module edges behind it."""
    packages: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for module, targets in graph.items():
        if module == "modseg_ros":
            continue
        for target in sorted(targets):
            if package_of(module) != package_of(target):
                packages[package_of(module)][package_of(target)].append(f"{module} -> {target}")
    return packages


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def upward_edges(packages: dict[str, dict[str, list[str]]]) -> list[str]:
    """Module edges from a package to one of its own layer or a higher one."""
    bad = []
    for package, targets in sorted(packages.items()):
        for target, edges in sorted(targets.items()):
            if LAYER_OF[target] >= LAYER_OF[package]:
                bad += [f"{edge}  ({package}, layer {LAYER_OF[package]} -> {target}, layer {LAYER_OF[target]})" for edge in edges]
    return bad


def test_every_package_has_a_layer():
    packages = {package_of(m) for m in MODULES if m != "modseg_ros"}
    assert packages <= set(LAYER_OF), f"packages without a layer in LAYERS: {sorted(packages - set(LAYER_OF))}"


def test_imports_point_down():
    bad = upward_edges(package_graph(module_graph()))
    assert not bad, "imports from a lower layer (or a peer) to a higher one:\n" + "\n".join(bad)


def test_only_ros_and_above_import_rclpy():
    below = {package for package, level in LAYER_OF.items() if level < LAYER_OF["ros"]}
    bad = sorted(f"{module_name(path)} imports {name}" for path in ROOT.rglob("*.py")
                 if module_name(path) == "modseg_ros" or package_of(module_name(path)) in below
                 for name in imported_names(path) if name.split(".")[0] in ROS_PACKAGES)  # fmt: skip
    assert not bad, "ROS imports below the ros layer:\n" + "\n".join(bad)


def test_no_package_cycles():
    packages = package_graph(module_graph())
    found = cycles({package: set(targets) for package, targets in packages.items()})
    assert not found, "package cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_no_module_cycles():
    found = cycles(module_graph())
    assert not found, "module cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def main() -> None:
    packages = package_graph(module_graph())
    for level, names in enumerate(LAYERS):
        for package in names:
            below = ", ".join(sorted(packages.get(package, {}))) or "-"
            print(f"{level}  {package:<9} -> {below}")
    bad = upward_edges(packages)
    for edge in bad:
        print("UPWARD:", edge)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
