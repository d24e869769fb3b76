"""The suite on every core (pytest-xdist, ``make test``): what each worker owns, and what runs alone.

Loaded with ``-p tests.support.parallel`` (``addopts`` in pyproject.toml), so that its first hook runs
before pytest-django reads the settings. Each worker (``gw0``, ``gw1``, ...) is a process of its own:

- Redis: the cache's ``KEY_PREFIX`` gets the worker's name (``CACHE_KEY_PREFIX=ci-1`` becomes
  ``ci-1-gw0``), so its keys (flag configuration generation, rate counters, cached results) and the
  streams' pub/sub channel (``features.streaming.notify``, named under the prefix; pub/sub ignores
  database numbers) are its own, whatever database ``REDIS_URL`` names; ``cache.clear()`` deletes the
  prefix's keys, never the shared database (``_cache_clear_own_keys`` in tests/conftest.py). Tasks
  are eager in tests (tests/conftest.py), so no Celery broker is shared.
- PostgreSQL: pytest-django creates one test database per worker (``test_<name>_gw0``, ...).
- chDB data directory, ``tmp_path``: under the worker's own base directory (``.../popen-gw0/``).
- Ports: servers a test starts listen on a port the system picks (port 0, ``live_server`` too).
- npm: ``growthbook_node`` installs tests/features/node under a file lock (tests/features/conftest.py).

Tests marked ``serial`` (the load test: it measures throughput and must not share the cores) run
while no other test does: the other workers finish the test they are in, then wait until it is done
(``RunLock``). Tests are handed out one at a time as workers free up (``--dist loadgroup``), heavy
ones early (``pytest_collection_modifyitems``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

# Marks of tests that take seconds to minutes each (pyproject.toml's markers), sent out early, the
# longest kinds first: the fuzzer (minutes), slow tests (up to two), the load test, the browser's.
HEAVY_MARKERS = ("fuzz", "slow", "load", "browser")
_ISOLATED = "TESTS_PARALLEL_WORKER"  # the worker whose settings the environment already holds


def worker_id() -> str | None:
    """``gw0``, ``gw1``, ... in a pytest-xdist worker; None in a run of one process."""
    return os.environ.get("PYTEST_XDIST_WORKER")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """The worker's share of the shared services, in the environment the settings are read from.

    Processes a test starts inherit it, so they share their worker's prefix; a pytest started by a test
    (the cluster suite) inherits the already-suffixed values and leaves them as they are.
    """
    worker = worker_id()
    if not worker or os.environ.get(_ISOLATED) == worker:
        return
    os.environ["CACHE_KEY_PREFIX"] = f"{os.environ.get('CACHE_KEY_PREFIX', 'xp')}-{worker}"
    os.environ[_ISOLATED] = worker


def _database_order(item: pytest.Item) -> int:
    """0: without the database; 1: in a transaction rolled back; transactional (live server): 2 with
    ``serialized_rollback``, 3 without.

    Transactional tests empty the tables when they end, so they come last, as pytest-django and Django
    order them: a test in a transaction after one would miss the data migrations' rows. Among them, a
    test without ``serialized_rollback`` has its flush re-create content types and permissions (new
    ids), on which the next one's ``serialized_rollback`` restore would fail (duplicate key): they
    come after all those with it. Tests without the database may go anywhere.
    """
    from pytest_django.fixtures import validate_django_db

    fixtures = getattr(item, "fixturenames", ())
    marker = item.get_closest_marker("django_db")
    transactional = "transactional_db" in fixtures or "live_server" in fixtures
    serialized = False
    if marker is not None:
        transaction, reset_sequences, _, serialized, _ = validate_django_db(marker)
        transactional = transactional or transaction or reset_sequences
    if transactional:
        return 2 if serialized else 3
    return 1 if marker is not None or "db" in fixtures else 0


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a worker, the order tests are handed out in (every worker sorts the same way: xdist needs the
    same order everywhere; this runs last, after the directories' conftests added their markers):

    1. ``serial`` tests, at once, while the other workers are in their first tests, short ones (2.),
       so that they wait for it as little as can be;
    2. short tests without the database;
    3. heavy tests, with the database or not, the longest kinds first (``HEAVY_MARKERS``): the
       fuzzer's minutes start early instead of last, leaving one worker running alone at the end;
    4. short tests with the database;
    5. transactional tests, last (``_database_order``), heavy ones first.
    """
    if not hasattr(config, "workerinput"):
        return
    if config.getvalue("loadgroup"):
        _groups_in_node_ids(items)

    def order(item: pytest.Item) -> tuple[int, int, int]:
        database = _database_order(item)
        serial = item.get_closest_marker("serial") is not None
        weight = next((i for i, name in enumerate(HEAVY_MARKERS) if item.get_closest_marker(name)), None)
        if database >= 2:  # transactional: serialized_rollback first, then heavy ones first
            return 5, database, -1 if serial else len(HEAVY_MARKERS) if weight is None else weight
        if serial:
            return 1, 0, 0
        if weight is None:
            return (2, 0, 0) if database == 0 else (4, 0, 0)
        return 3, 0, weight

    items.sort(key=order)


def _groups_in_node_ids(items: list[pytest.Item]) -> None:
    """``xdist_group``: the group's name after ``@`` in the node id, as pytest-xdist's ``loadgroup``
    reads it. pytest-xdist 3.8 writes it where pytest 9.2 no longer reads node ids from (``_nodeid``;
    now ``_id``), so the groups' tests were dealt out one by one (pytest-xdist issue #1386). Does
    nothing where pytest-xdist's own suffix took effect."""
    try:
        from _pytest.nodeid import coerce_node_id
    except ImportError:  # a pytest before 9.2: pytest-xdist's suffix works
        return
    for item in items:
        marks = item.iter_markers("xdist_group")
        names = sorted(
            {str(mark.args[0] if mark.args else mark.kwargs.get("name", "default")) for mark in marks}
        )
        suffix = "@" + "_".join(names)
        if names and hasattr(item, "_id") and not item.nodeid.endswith(suffix):
            item._id = coerce_node_id(item.nodeid + suffix)


class RunLock:
    """A readers-writer lock between the workers of one run, on two files (``fcntl.flock``).

    Every test holds the room shared; a ``serial`` test holds it exclusive. A worker passes the gate
    on its way in, and a serial test keeps the gate closed while it waits for the room to empty, so
    the other workers cannot keep starting tests ahead of it.
    """

    def __init__(self, directory: Path) -> None:
        self.gate: IO[bytes] = (directory / "run.gate").open("ab")
        self.room: IO[bytes] = (directory / "run.room").open("ab")

    @contextlib.contextmanager
    def hold(self, *, exclusive: bool) -> Iterator[None]:
        fcntl.flock(self.gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(self.room, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            if not exclusive:
                fcntl.flock(self.gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(self.room, fcntl.LOCK_UN)
            if exclusive:
                fcntl.flock(self.gate, fcntl.LOCK_UN)

    def close(self) -> None:
        self.gate.close()
        self.room.close()


_RUN_LOCK = pytest.StashKey[RunLock]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Setup, call and teardown of every test under the run's lock (workers of xdist only)."""
    config = item.config
    if not hasattr(config, "workerinput"):
        return (yield)
    lock = config.stash.get(_RUN_LOCK, None)
    if lock is None:
        # The workers' base directories (.../popen-gw0) share their parent, which is this run's.
        lock = config.stash[_RUN_LOCK] = RunLock(config._tmp_path_factory.getbasetemp().parent)
        config.add_cleanup(lock.close)
    with lock.hold(exclusive=item.get_closest_marker("serial") is not None):
        return (yield)
