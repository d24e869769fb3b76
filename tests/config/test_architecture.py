"""The architecture rules in `.importlinter` hold for the code, and each one catches the import it is
there to refuse (planted in a copy of the packages)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.production import ROOT

PACKAGES = ("config", "metrics", "experiments", "features", "analytics")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_lint_imports__project__every_contract_kept():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    "module, line, contract",
    [
        ("experiments/bucketing.py", "from django.db import models", "Pure logic"),
        ("analytics/stats/power.py", "import rest_framework", "Pure logic"),
        ("features/evaluation.py", "from features import models", "Pure logic"),
        ("metrics/services.py", "from experiments import models", "Apps depend one way"),
        ("experiments/services.py", "import features.services", "Apps depend one way"),
        ("features/services.py", "import analytics.selectors", "Apps depend one way"),
        ("analytics/rollup/query.py", "import chdb", "Only the ClickHouse package"),
        ("features/views.py", "import clickhouse_connect", "Only the ClickHouse package"),
        ("features/services.py", "import features.sdk.keys", "The SDK edge"),
        ("features/sdk/cache.py", "from features.sdk import limits", "The SDK edge"),
    ],
)
def test_lint_imports__planted_import__contract_broken(tmp_path, module, line, contract):
    # Given a copy of the packages with one forbidden import added
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    target = tmp_path / module
    assert target.is_file(), module
    target.write_text(target.read_text() + f"\n{line}  # planted\n")

    # When the contracts are checked, then the one that refuses it is broken
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts")[-1]
    assert contract in broken, result.stdout[-3000:]
