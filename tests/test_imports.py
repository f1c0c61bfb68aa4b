"""The package's structure: every module imports on its own, and imports flow one way.

carqa is four rooms over a small core: ``carqa`` (version, settings, errors, progress) ←
``carqa.index`` ← ``carqa.qa`` ← ``carqa.api`` ← ``carqa.cli``. A room may use the rooms
below it, never one above: the index must not know about answering, answering not about HTTP,
HTTP not about the command line. These tests read every module (imports inside functions
too) and import each one alone in a fresh process, so a cycle or an upward import fails here.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FOLDERS = {"carqa": REPO / "carqa", "carqa.index": REPO / "index", "carqa.qa": REPO / "qa"}
FOLDERS["carqa.api"] = REPO / "api"
LAYERS = ["core", "carqa.index", "carqa.qa", "carqa.api", "carqa.cli"]


def _modules() -> dict[str, Path]:
    """Every module of the installed namespace, by dotted name, and its file."""
    found: dict[str, Path] = {}
    for package, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            relative = path.relative_to(folder).with_suffix("")
            parts = [p for p in relative.parts if p != "__init__"]
            if package == "carqa" and parts[:1] in (["index"], ["qa"], ["api"]):
                continue  # not in the carqa/ folder; listed only for completeness
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _layer(module: str) -> int:
    for index, layer in enumerate(LAYERS[1:], start=1):
        if module == layer or module.startswith(layer + "."):
            return index
    return 0


def _imports(path: Path, module: str, *, top_level_only: bool) -> set[str]:
    """The carqa modules ``path`` imports (all of them, or only those run at import time)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.If) and top_level_only:
            continue  # ``if TYPE_CHECKING:`` blocks do not run
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name in MODULES}


def test_every_module_is_found() -> None:
    assert {"carqa", "carqa.cli", "carqa.index.search.build", "carqa.qa.engine"} <= set(MODULES)
    assert "carqa.api.app" in MODULES


def test_imports_flow_one_way() -> None:
    upward = [
        f"{module} imports {imported}"
        for module, path in MODULES.items()
        for imported in sorted(_imports(path, module, top_level_only=False))
        if _layer(imported) > _layer(module)
    ]
    assert upward == []


def test_no_import_cycles() -> None:
    graph = {m: _imports(p, m, top_level_only=True) - {m} for m, p in MODULES.items()}
    # A package's __init__ importing its own submodules is not a cycle of the rooms.
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :]
                if not all(nxt.startswith(m + ".") or m == nxt for m in cycle):
                    cycles.append([*cycle, nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == []


_IMPORT_EACH = """
import importlib, json, os, sys
# Third-party libraries the rooms share, loaded once before forking (they cannot hide a cycle
# between carqa modules, and loading them per child made this take minutes). Not torch nor
# rich: whether a module pulls those in is checked.
for library in ("numpy", "faiss", "pydantic", "fastapi", "langchain_text_splitters"):
    try:
        importlib.import_module(library)
    except ImportError:
        pass
results = {}
for name in sys.argv[1:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(name)
            out = {"ok": True, "loaded": sorted(m for m in sys.modules if m.startswith("carqa"))}
            out["heavy"] = sorted(m for m in ("torch", "rich") if m in sys.modules)
        except BaseException as error:
            out = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        os.write(write, json.dumps(out).encode())
        os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 1 << 16):
        data += chunk
    os.close(read)
    os.waitpid(pid, 0)
    results[name] = json.loads(data)
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def imported_alone() -> dict[str, dict]:
    """Each module imported alone: a fresh interpreter forks a child per module, so no module
    benefits from another having been imported first (a cycle shows as an ImportError).
    ``__main__`` modules run the command when imported: they are left out."""
    env = {**os.environ, "PYTHONPATH": ""}
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH, *[m for m in MODULES if not m.endswith("__main__")]],
        capture_output=True,
        text=True,
        cwd="/",
        env=env,
        timeout=600,
        check=True,
    )
    return json.loads(done.stdout)


def test_every_module_imports_on_its_own(imported_alone: dict[str, dict]) -> None:
    failed = {name: r["error"] for name, r in imported_alone.items() if not r["ok"]}
    assert failed == {}


def test_importing_a_module_loads_no_room_above_it(imported_alone: dict[str, dict]) -> None:
    upward = {
        name: [m for m in result["loaded"] if m in MODULES and _layer(m) > _layer(name)]
        for name, result in imported_alone.items()
        if result["ok"]
    }
    assert {name: found for name, found in upward.items() if found} == {}


def test_serving_needs_neither_torch_nor_terminal_drawing(
    imported_alone: dict[str, dict],
) -> None:
    """The query side (reader, ONNX encoder, engine, HTTP app) loads without torch, and the
    index and answering rooms never draw on the terminal (the CLI does)."""
    for name in ("carqa.index.search.reader", "carqa.index.search.onnx_encoder", "carqa.api.app"):
        assert "torch" not in imported_alone[name]["heavy"], name
    for name, result in imported_alone.items():
        if _layer(name) in (1, 2):
            assert "rich" not in result["heavy"], name
