"""The meter core never imports Home Assistant: it must stay publishable as its own library."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "custom_components" / "smartmeter" / "core"
MODULES = sorted(CORE.rglob("*.py"))


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


def _imported_modules(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            names += [
                arg.value
                for arg in node.args[:1]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            ]
    return names


def test_core_has_modules() -> None:
    """The walk below sees the core (a moved folder must not make it pass vacuously)."""
    assert {"p1.py", "models.py", "source.py"} <= {path.name for path in MODULES}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(CORE)))
def test_no_homeassistant_import(path: Path) -> None:
    """No import statement of any core module names homeassistant."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for name in _imported_modules(tree):
        assert name.split(".")[0] != "homeassistant", f"{path.name} imports {name}"
    # Nor does it reach the integration around it (which is Home Assistant code).
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            assert node.level == 1 or path.parent != CORE, f"{path.name} imports from outside the core"


def test_core_imports_with_homeassistant_blocked() -> None:
    """Every core module imports in a fresh interpreter where homeassistant cannot be imported."""
    modules = [
        "custom_components.smartmeter.core." + ".".join(path.relative_to(CORE).with_suffix("").parts)
        for path in MODULES
        if path.name != "__init__.py"
    ]
    script = textwrap.dedent(
        f"""
        import importlib, importlib.abc, sys, types

        class BlockHomeAssistant(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "homeassistant" or name.startswith("homeassistant."):
                    raise ImportError(f"blocked: {{name}}")
                return None

        sys.meta_path.insert(0, BlockHomeAssistant())
        # The integration's own __init__ imports Home Assistant: load the core
        # package without running it, as a library user of the core would.
        for name, folder in (("custom_components", "custom_components"),
                             ("custom_components.smartmeter", "custom_components/smartmeter")):
            package = types.ModuleType(name)
            package.__path__ = [folder]
            sys.modules[name] = package
        importlib.import_module("custom_components.smartmeter.core")
        for name in {modules!r}:
            importlib.import_module(name)
        assert not any(m == "homeassistant" or m.startswith("homeassistant.") for m in sys.modules)
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
