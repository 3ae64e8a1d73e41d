"""The house's rules, checked on the imports themselves (docs/architecture.md):

- functions/scorer (the Lambda zip) imports nothing from ecg_scorer/ or model_code/, and no
  third-party package beyond what functions/requirements.txt ships (and boto3, which the
  Lambda runtime has);
- model_code/ (the SageMaker container) imports nothing of ours but its own modules;
- no package has an import cycle between its modules.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {
    "scorer": REPO / "functions" / "scorer",
    "ecg_scorer": REPO / "ecg_scorer",
}
LAMBDA_THIRD_PARTY = {"numpy", "aws_lambda_powertools", "boto3", "botocore"}


def _imports(path: Path) -> set[str]:
    """Top-level-or-nested imports of one file, as dotted names (relative ones resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
            found.add(node.module)
    return found


def _modules(package: str) -> dict[str, Path]:
    root = PACKAGES[package]
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join((package, *parts)).removesuffix(".__init__")
        modules[name] = path
    return modules


def _third_party(name: str) -> bool:
    top = name.split(".")[0]
    return top not in sys.stdlib_module_names and top not in {"scorer", "ecg_scorer", "__future__"}


def test_the_lambda_imports_only_itself_and_what_its_zip_ships() -> None:
    for module, path in _modules("scorer").items():
        for name in _imports(path):
            top = name.split(".")[0]
            assert top not in {"ecg_scorer", "model", "inference", "train", "synthetic"}, (
                f"{module} imports {name}: the Lambda zip holds functions/ only"
            )
            if _third_party(name):
                assert top in LAMBDA_THIRD_PARTY, f"{module} imports {name}, not in the zip"


def test_the_model_container_code_imports_only_itself() -> None:
    for path in (REPO / "model_code").glob("*.py"):
        if path.name == "train.py":  # runs in the dev venv, reads files as the Lambda does
            continue
        for name in _imports(path):
            assert name.split(".")[0] not in {"scorer", "ecg_scorer"}, f"{path.name}: {name}"


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_cycles(package: str) -> None:
    modules = _modules(package)
    graph = {
        module: {
            other
            for name in _imports(path)
            for other in modules
            if other != module
            and (name == other or name.startswith(other + "."))
            and not (module.startswith(other + "."))
        }
        for module, path in modules.items()
    }
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        seen[module] = 1
        for other in graph[module]:
            if seen.get(other) == 1:
                cycle = [*path[path.index(other) :], other] if other in path else [module, other]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if other not in seen:
                visit(other, [*path, other])
        seen[module] = 2

    for module in graph:
        if module not in seen:
            visit(module, [module])
