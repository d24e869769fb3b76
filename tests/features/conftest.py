"""Fixtures shared by the feature tests."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture(scope="session")
def growthbook_node() -> Path:
    """The directory holding GrowthBook's JavaScript SDK installed from npm, ready for ``node``.

    Runs ``npm ci`` (the versions pinned by package-lock.json) when ``node_modules`` is missing or
    older than the lock file. Node and npm are part of the test machine: without them this fails
    rather than skipping, since the SDK tests would then prove nothing.
    """
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: the JavaScript SDK tests need node 20+ and npm")
    stamp = NODE_DIR / "node_modules" / ".package-lock.json"
    # One install at a time: pytest-xdist workers (and test runs side by side) share this directory,
    # and ``npm ci`` starts by deleting node_modules. The others wait, then find it installed.
    with (NODE_DIR / ".npm-install.lock").open("ab") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists() or stamp.stat().st_mtime < (NODE_DIR / "package-lock.json").stat().st_mtime:
            subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=NODE_DIR,
                check=True,
                timeout=300,
            )
    return NODE_DIR


@pytest.fixture
def growthbook_flags() -> list[str]:
    """The agreement tests' flags and experiments in production (``growthbook_flags.flags_create``)."""
    from tests.features.growthbook_flags import flags_create

    return flags_create()
