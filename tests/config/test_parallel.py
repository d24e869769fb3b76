"""The suite on every core (tests/support/parallel.py): each pytest-xdist worker's own share of the
shared services, the serial tests' lock, and the order tests are handed out in."""

from __future__ import annotations

import fcntl
import os
import random
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from tests.support import parallel
from tests.support.parallel import RunLock


# --- each worker's share ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("worker", "already", "expected"),
    [
        ("gw3", None, "ci-7-gw3"),  # a worker: its own prefix
        ("gw3", "gw3", "ci-7"),  # a pytest started by a test of that worker: the prefix it inherited
        (None, None, "ci-7"),  # one process: as given
    ],
)
def test_worker_environment__cache_prefix__suffixed_once_per_worker(monkeypatch, worker, already, expected):
    monkeypatch.setenv("CACHE_KEY_PREFIX", "ci-7")
    for name, value in (("PYTEST_XDIST_WORKER", worker), ("TESTS_PARALLEL_WORKER", already)):
        monkeypatch.setenv(name, value or "")  # restored afterwards, whatever the hook sets
        if value is None:
            monkeypatch.delenv(name)

    parallel.pytest_load_initial_conftests(early_config=None)

    assert os.environ["CACHE_KEY_PREFIX"] == expected


@pytest.mark.django_db
def test_this_worker__cache_prefix_and_test_database__its_own():
    worker = parallel.worker_id()
    if worker is None:
        pytest.skip("one process: nothing is shared (make test runs the workers)")
    if not (connection.vendor == "sqlite" and connection.is_in_memory_db()):  # (in this process's memory)
        assert connection.settings_dict["NAME"].endswith(f"_{worker}")  # pytest-django's, one per worker
    if "django_redis" in settings.CACHES["default"]["BACKEND"]:
        assert settings.CACHES["default"]["KEY_PREFIX"].endswith(f"-{worker}")
        assert cache.make_key("flags:changed").startswith(settings.CACHES["default"]["KEY_PREFIX"] + ":")


def test_cache_clear__redis__deletes_this_process_keys_only():
    if "django_redis" not in settings.CACHES["default"]["BACKEND"]:
        pytest.skip("needs Redis (REDIS_URL): CI sets it")
    from django_redis import get_redis_connection

    redis = get_redis_connection("default")
    elsewhere = f"{settings.CACHES['default']['KEY_PREFIX']}-elsewhere:1:kept"  # another worker's key
    redis.set(elsewhere, b"1")
    try:
        cache.set("mine", 1)
        cache.clear()
        assert cache.get("mine") is None
        assert redis.get(elsewhere) == b"1"
    finally:
        redis.delete(elsewhere)


# --- the serial tests' lock -------------------------------------------------------------------------------
def _held(path: Path) -> bool:
    """Whether another open file holds a lock on ``path``."""
    with path.open("ab") as probe:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(probe, fcntl.LOCK_UN)
        return False


def test_run_lock__serial_test__waits_for_the_running_test_and_holds_back_the_next(tmp_path):
    # Given a test running on one worker (each RunLock opens the files anew, as each worker does)
    running, serial, late = RunLock(tmp_path), RunLock(tmp_path), RunLock(tmp_path)
    log: list[str] = []
    release_serial = threading.Event()

    def serial_test() -> None:
        with serial.hold(exclusive=True):
            log.append("serial in")
            release_serial.wait(30)
            log.append("serial out")

    def late_test() -> None:
        with late.hold(exclusive=False):
            log.append("late in")

    with running.hold(exclusive=False):
        # When a serial test arrives on another worker
        serial_thread = threading.Thread(target=serial_test)
        serial_thread.start()
        deadline = time.monotonic() + 30
        while not _held(tmp_path / "run.gate"):  # it closed the gate and waits for the room
            assert time.monotonic() < deadline, "the serial test never reached the lock"
            time.sleep(0.01)
        # Then it waits for the running test, and a test arriving meanwhile waits behind it
        late_thread = threading.Thread(target=late_test)
        late_thread.start()
        time.sleep(0.2)  # room for a broken lock to let either in
        assert log == []
    release_serial.set()
    serial_thread.join(30)
    late_thread.join(30)
    assert log == ["serial in", "serial out", "late in"]
    for lock in (running, serial, late):
        lock.close()


def test_run_lock__tests_of_several_workers__run_side_by_side(tmp_path):
    first, second = RunLock(tmp_path), RunLock(tmp_path)
    with first.hold(exclusive=False), second.hold(exclusive=False):
        assert _held(tmp_path / "run.room")
    assert not _held(tmp_path / "run.room") and not _held(tmp_path / "run.gate")
    first.close()
    second.close()


# --- the order tests are handed out in --------------------------------------------------------------------
SERIALIZED = pytest.mark.django_db(transaction=True, serialized_rollback=True)


class FakeItem:
    def __init__(self, name: str, *marks: pytest.MarkDecorator, fixtures: tuple[str, ...] = ()) -> None:
        self.name = name
        self.marks = {mark.mark.name: mark.mark for mark in marks}
        self.fixturenames = fixtures

    def get_closest_marker(self, name: str):
        return self.marks.get(name)

    def __repr__(self) -> str:
        return self.name


class FakeConfig:
    workerinput = {"workerid": "gw0"}

    def getvalue(self, name: str) -> bool:
        return False  # not --dist loadgroup


def test_order__in_a_worker__serial_first_heavy_early_transactional_last():
    expected = [
        FakeItem("serial load test", pytest.mark.slow, pytest.mark.serial),
        FakeItem("unit test"),
        FakeItem("cluster suite", pytest.mark.slow),
        FakeItem("api test", fixtures=("db",)),
        FakeItem("fuzzing", pytest.mark.django_db, pytest.mark.slow, pytest.mark.fuzz),
        FakeItem("admin test", pytest.mark.django_db),
        FakeItem("sdk streaming", SERIALIZED, pytest.mark.slow, fixtures=("live_server",)),
        FakeItem("browser", SERIALIZED, pytest.mark.browser, fixtures=("live_server",)),
        FakeItem("live server test", SERIALIZED, fixtures=("live_server",)),
        FakeItem("webhook worker", pytest.mark.django_db(transaction=True), pytest.mark.slow),
        FakeItem("transactional test", fixtures=("transactional_db",)),
    ]
    items = random.Random(7).sample(expected, len(expected))

    parallel.pytest_collection_modifyitems(FakeConfig(), items)

    # serial first, short tests without the database, heavy ones (the fuzzer first), short ones with the
    # database; transactional ones last (they empty the tables): with serialized_rollback first (a
    # flush without it re-creates content types their restore would collide with), heavy ones first
    names = [item.name for item in items]
    assert names[:4] == ["serial load test", "unit test", "fuzzing", "cluster suite"]
    assert set(names[4:6]) == {"api test", "admin test"}
    assert names[6:9] == ["sdk streaming", "browser", "live server test"]
    assert names[9:] == ["webhook worker", "transactional test"]


def test_order__one_process__left_as_collected():
    items = [FakeItem("b", pytest.mark.slow), FakeItem("a", fixtures=("transactional_db",))]

    parallel.pytest_collection_modifyitems(type("Config", (), {})(), items)

    assert [item.name for item in items] == ["b", "a"]


@pytest.mark.xdist_group("parallel_probe")
def test_xdist_group__in_a_worker__node_id_names_the_group(request):
    # pytest-xdist's loadgroup reads the group from the node id (pytest-xdist issue #1386 on pytest 9.2)
    if parallel.worker_id() is None or not request.config.getvalue("loadgroup"):
        pytest.skip("runs under pytest-xdist with --dist loadgroup (make test)")
    assert request.node.nodeid.endswith("@parallel_probe")
