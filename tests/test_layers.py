"""The layers of shared/DESIGN.md, enforced: imports only point down, and the lower layers stay free of Qt
(and, for the gallery and the recipe, of torch). Every import counts, the lazy ones inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import studio

ROOT = Path(studio.__file__).parent
# Lower number = lower layer. Utilities every layer may use sit at the bottom with the recipe.
LAYERS = {"recipe": 0, "paths": 0, "resources": 0, "images": 0, "gallery": 1, "engine": 2, "backends": 3, "cli": 4,
          "ui": 5, "cli_more": 4}
TOOLS = {"bench", "builtin", "eval_builtin", "train_builtin", "__main__", "__init__"}  # above every layer
NO_QT = {"recipe", "gallery", "engine", "backends", "cli"}
NO_TORCH = {"recipe", "gallery"}


def _layer(module: str) -> str:
    """`studio.engine.models` -> "engine"; `studio.cli` -> "cli"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module `path` imports, with the line, relative imports resolved."""
    package = ".".join(("studio", *path.relative_to(ROOT).with_suffix("").parts[:-1]))
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.append((node.lineno, base))
            if base == "studio":  # `from studio import engine` names a layer; `__version__` does not
                found += [(node.lineno, f"studio.{a.name}") for a in node.names
                          if (ROOT / a.name).is_dir() or (ROOT / f"{a.name}.py").is_file()]
    return found


def _modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "_resources" not in p.parts)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down_the_layers(path):
    here = _layer("studio." + ".".join(path.relative_to(ROOT).with_suffix("").parts))
    if here in TOOLS or here not in LAYERS:
        assert here in TOOLS, f"{path.name}: a module outside every layer; add it to the layer table"
        return
    wrong = []
    for line, module in _imports(path):
        if module.startswith("studio."):
            there = _layer(module)
            if there in TOOLS or LAYERS.get(there, 99) > LAYERS[here]:
                wrong.append(f"line {line}: {here} imports {module}")
        top = module.split(".")[0]
        if here in NO_QT and top in ("PySide6", "shiboken6"):
            wrong.append(f"line {line}: {here} imports Qt ({module})")
        if here in NO_TORCH and top in ("torch", "diffusers", "transformers"):
            wrong.append(f"line {line}: {here} imports {top}")
    assert not wrong, "\n".join(wrong)


def test_the_layer_check_sees_a_violation(tmp_path, monkeypatch):
    """The check itself: a recipe module importing the engine is caught (so the test above can fail)."""
    bad = ROOT / "recipe" / "_layer_probe.py"
    bad.write_text("def f():\n    from studio.engine import models\n    import torch\n")
    try:
        with pytest.raises(AssertionError, match="recipe imports studio.engine.*\n.*recipe imports torch"):
            test_imports_point_down_the_layers(bad)
    finally:
        bad.unlink()
