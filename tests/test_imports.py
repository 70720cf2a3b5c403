"""No import circle among catdog's modules: each module's imports at import time form a tree."""

from __future__ import annotations

import ast
import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "catdog"


def module_imports(source: str, modules: set[str]) -> set[str]:
    """The catdog modules `source` imports when it is imported: not inside functions, not under TYPE_CHECKING."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("catdog."))
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "catdog":
                    found.update(a.name for a in node.names)
                elif node.module.startswith("catdog."):
                    found.add(node.module.split(".")[1])
            for field in ("body", "orelse", "finalbody", "handlers"):
                visit(getattr(node, field, []))

    visit(ast.parse(source).body)
    return found & modules


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` (module -> modules it imports), as a path back to its start; None if none."""
    done: set[str] = set()

    def walk(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        for imported in sorted(graph.get(module, ())):
            if (cycle := walk(imported, [*path, module])) is not None:
                return cycle
        done.add(module)
        return None

    for module in sorted(graph):
        if (cycle := walk(module, [])) is not None:
            return cycle
    return None


def test_no_import_circle_among_catdog_modules():
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    graph = {m: module_imports((PACKAGE / f"{m}.py").read_text(encoding="utf-8"), modules) for m in modules}
    assert "cli" in graph and graph["evaluation"], "the package was not read"
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_check_finds_a_circle_and_ignores_late_and_typing_imports():
    sources = {
        "a": "from catdog.b import x\n",
        "b": "from catdog import a\ntry:\n    import catdog.c\nexcept ImportError:\n    pass\n",
        "c": "def f():\n    from catdog.a import y\n",
        "d": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from catdog.c import z\n",
    }
    graph = {m: module_imports(s, set(sources)) for m, s in sources.items()}
    assert graph == {"a": {"b"}, "b": {"a", "c"}, "c": set(), "d": set()}
    assert find_cycle(graph) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_import_catdog_is_light_and_its_names_load_on_use():
    """`import catdog` loads no NumPy, OpenCV or TensorFlow; its public names load their modules on
    first use, and none of those modules imports TensorFlow or Keras (training does, when it runs)."""
    import subprocess
    import sys

    heavy = ("tensorflow", "keras", "jax", "torch", "numpy", "cv2", "matplotlib", "onnxruntime")
    code = (
        "import sys, catdog\n"
        f"heavy = {heavy!r}\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "for name in catdog.__all__:\n"
        "    getattr(catdog, name)\n"
        "print(sorted(m for m in heavy[:4] if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent,
                          env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "[]"]


def test_public_names_are_listed_once_for_users_and_type_checkers():
    """__all__, the lazy table and the TYPE_CHECKING imports (what mypy and IDEs see) name the same
    things, and each is what its module defines."""
    import catdog

    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    typed: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.module
                typed.update({a.name: imp.module for a in imp.names})
    assert typed == catdog._PUBLIC
    assert catdog.__all__ == ["__version__", *catdog._PUBLIC]
    assert set(catdog._PUBLIC) <= set(dir(catdog))
    assert catdog.open_run is __import__("catdog.api").api.open_run
    try:
        catdog.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert str(exc) == "module 'catdog' has no attribute 'no_such_name'"
    else:
        raise AssertionError("an unknown name did not raise AttributeError")
