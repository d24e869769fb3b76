"""`python -m bench`: one table of every benchmark; a missing one is skipped with a note, a failing
one reported while the others still run. (The benchmarks themselves run in `make bench`.)"""

import os
import sys
import types

import pytest

from bench import __main__ as runner
from bench.common import Result


@pytest.fixture
def fake_entries(monkeypatch):
    ok = types.ModuleType("bench.fake_ok")
    ok.run = lambda: [Result("fake_ok", "thing", 2.0, "floor", 4.0, "ops/s")]
    broken = types.ModuleType("bench.fake_broken")

    def fail():
        raise RuntimeError("boom")

    broken.run = fail
    monkeypatch.setitem(sys.modules, "bench.fake_ok", ok)
    monkeypatch.setitem(sys.modules, "bench.fake_broken", broken)
    monkeypatch.setattr(runner, "ENTRIES", ["fake_missing", "fake_ok", "fake_broken"])


def test_bench_runner__missing_and_failing_entries__table_of_the_rest_with_notes(fake_entries, capsys):
    status = runner.main([])
    out = capsys.readouterr().out
    assert status == 1  # one benchmark failed
    assert "| fake_ok | thing | 2.00 ops/s | floor | 4.00 ops/s | 0.500 |" in out
    assert "fake_missing: skipped, bench/fake_missing.py does not exist yet" in out
    assert "fake_broken: FAILED" in out


def test_bench_runner__quick__short_durations_unless_set(fake_entries, monkeypatch, capsys):
    for name in runner.QUICK_ENV:  # set then unset: monkeypatch restores them after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("BENCH_HTTP_SECONDS", "7")
    assert runner.main(["--quick", "fake_ok"]) == 0
    assert os.environ["BENCH_INGEST_SECONDS"] == runner.QUICK_ENV["BENCH_INGEST_SECONDS"]
    assert os.environ["BENCH_HTTP_SECONDS"] == "7"


def test_bench_runner__unknown_entry__usage_error(capsys):
    with pytest.raises(SystemExit):
        runner.main(["nope"])


@pytest.mark.slow
def test_bench_streaming__quick__runs_to_its_table():
    # The streaming benchmark shares the evaluate benchmark's load generators: a change of their
    # signature once broke it unnoticed (make bench is not part of the suite), so one quick run here.
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "streaming"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "FAILED" not in done.stdout
    assert "| streaming | evaluate with 1000 idle streams" in done.stdout
