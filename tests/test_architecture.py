"""The house's rules, checked on the imports themselves (docs/architecture.md):

- functions/scorer (the Lambda zip) imports nothing from ecg_scorer/ or model_code/, and no
  third-party package beyond what functions/requirements.txt ships (and boto3, which the
  Lambda runtime has);
- model_code/ (the SageMaker container) imports nothing of ours but its own modules;
- no package has an import cycle between its modules;
- every module of functions/scorer, ecg_scorer and model_code opens with a docstring whose
  first line says its job, and docs/architecture.md names every module.
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
            assert top not in {
                "ecg_scorer",
                "model",
                "inference",
                "train",
                "train_data",
                "synthetic",
            }, f"{module} imports {name}: the Lambda zip holds functions/ only"
            if _third_party(name):
                assert top in LAMBDA_THIRD_PARTY, f"{module} imports {name}, not in the zip"


def test_the_model_container_code_imports_only_itself() -> None:
    for path in (REPO / "model_code").glob("*.py"):
        # Training and the study run in the dev venv and read files as the Lambda does.
        if path.name in {"train.py", "train_data.py", "study.py"}:
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


# -- each module says its job ----------------------------------------------------------------

DOCUMENTED = {
    "functions/scorer": REPO / "functions" / "scorer",
    "ecg_scorer": REPO / "ecg_scorer",
    "model_code": REPO / "model_code",
}
# Words a first line is made of when nobody wrote it yet.
PLACEHOLDERS = ("todo", "fixme", "xxx", "tbd", "placeholder", "docstring", "lorem", "stub")


def _every_module() -> list[Path]:
    return sorted(path for root in DOCUMENTED.values() for path in root.rglob("*.py"))


def _first_line(path: Path) -> str | None:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    return doc.strip().splitlines()[0].strip() if doc and doc.strip() else None


def _name(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def _says_its_job(path: Path) -> bool:
    """A first docstring line of at least four words that is no placeholder and does not
    merely repeat the module's name."""
    line = _first_line(path)
    if line is None:
        return False
    words = [w.strip(".,:;!?()`'\"") for w in line.casefold().split()]
    stem = path.stem.casefold()
    return (
        len(words) >= 4  # "Helpers.", "The app module." say nothing
        and not any(word in PLACEHOLDERS for word in words)
        and line.rstrip(".").casefold() not in {stem, f"{stem}.py", f"the {stem} module"}
    )


def test_every_module_opens_with_a_line_that_says_its_job() -> None:
    unsaid = [f"{_name(p)}: {_first_line(p)!r}" for p in _every_module() if not _says_its_job(p)]
    assert not unsaid, "modules whose first docstring line does not say its job:\n" + "\n".join(
        unsaid
    )


def test_the_docstring_check_refuses_what_says_nothing(tmp_path: Path) -> None:
    cases = {
        "none.py": "x = 1\n",
        "empty.py": '""""""\n',
        "todo.py": '"""TODO: write what this module is for."""\n',
        "short.py": '"""Helpers."""\n',
        "keys.py": '"""The keys module."""\n',
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert not _says_its_job(tmp_path / name), name
    (tmp_path / "good.py").write_text('"""Site and device from an S3 key."""\n', encoding="utf-8")
    assert _says_its_job(tmp_path / "good.py")


def test_docs_architecture_names_every_module() -> None:
    """docs/architecture.md is the map: a module it does not name is a room nobody was told of."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [
        _name(path)
        for path in _every_module()
        if path.name != "__init__.py"
        and not any(f"`{path.stem}{end}`" in text for end in ("", ".py", "/"))
    ]
    assert not missing, "modules docs/architecture.md does not name: " + ", ".join(missing)
