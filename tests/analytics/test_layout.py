"""The layout's rules that imports can break: the statistics engine and the Results document stay pure
Python (no Django, no ClickHouse), and the apps analytics reads never import it back except to call a
task (``analytics.tasks``)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = [
    *sorted((ROOT / "analytics" / "stats").glob("*.py")),
    ROOT / "analytics" / "results" / "document.py",
]
# What a pure module may import from this project: other pure modules only.
PURE_PROJECT_MODULES = ("analytics.stats", "analytics.results.document")
NOT_IMPORTING_ANALYTICS = ["experiments", "metrics", "features"]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth of the file (function-level imports too)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def _is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("path", PURE, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_pure_module__imports__no_django_no_clickhouse_no_other_project_code(path):
    forbidden = sorted(
        module
        for module in imported_modules(path)
        if _is_within(module, "django")
        or _is_within(module, "rest_framework")
        or _is_within(module, "chdb")
        or _is_within(module, "clickhouse_connect")
        or (
            module.split(".")[0] in ("analytics", "experiments", "metrics", "features", "config")
            and not any(_is_within(module, allowed) for allowed in PURE_PROJECT_MODULES)
        )
    )
    assert forbidden == []


@pytest.mark.parametrize("app", NOT_IMPORTING_ANALYTICS)
def test_apps_analytics_reads__imports__never_analytics(app):
    importing = sorted(
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / app).rglob("*.py")
        if any(
            _is_within(module, "analytics") and not _is_within(module, "analytics.tasks")
            for module in imported_modules(path)
        )
    )
    assert importing == []


def test_imported_modules__planted_function_level_django_import__found(tmp_path):
    source = tmp_path / "planted.py"
    source.write_text("def f():\n    from django.conf import settings\n    return settings\n")
    assert "django.conf" in imported_modules(source)
