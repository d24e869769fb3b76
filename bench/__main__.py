"""`make bench` / `python -m bench [ingest|evaluate|analyze|incremental ...] [--quick]`: run benchmarks, print one table.

Each benchmark module exposes `run() -> list[Result]`; a result pairs what we measure with the
baseline measured in the same run, so the ratio means something on any machine. An entry whose
module is missing is skipped with a note; one that fails is reported and the others still run
(the exit status is then 1).
"""

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

from bench.common import Result

ENTRIES = ["ingest", "evaluate", "growthbook", "streaming", "analyze", "incremental", "dimensions"]
# --quick: shorter runs and smaller data, to check that every benchmark works end to end (the
# numbers are noisier). Explicit environment variables still win.
QUICK_ENV = {
    "BENCH_INGEST_SECONDS": "3",
    "BENCH_HTTP_SECONDS": "3",
    "BENCH_ANALYZE_EVENTS": "200000",
    "BENCH_ANALYZE_ROUNDS": "1",
    "BENCH_INCREMENTAL_EVENTS": "200000,600000",
    "BENCH_INCREMENTAL_ROUNDS": "1",
    "BENCH_DIMENSIONS_EVENTS": "200000",
    "BENCH_DIMENSIONS_ROUNDS": "1",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("entries", nargs="*", help=f"any of {', '.join(ENTRIES)} (default: all)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--quick", action="store_true", help="short runs on small data (a smoke test)")
    args = parser.parse_args(argv)
    unknown = [entry for entry in args.entries if entry not in ENTRIES]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(ENTRIES)}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if args.quick:
        for name, value in QUICK_ENV.items():
            os.environ.setdefault(name, value)
    results: list[Result] = []
    notes: list[str] = []
    failed = False
    for entry in args.entries or ENTRIES:
        print(f"\n### {entry}", flush=True)
        try:
            module = importlib.import_module(f"bench.{entry}")
        except ModuleNotFoundError as exc:
            if exc.name != f"bench.{entry}":
                raise
            notes.append(f"{entry}: skipped, bench/{entry}.py does not exist yet")
            print(notes[-1], flush=True)
            continue
        started = time.monotonic()
        try:
            results.extend(module.run())
        except Exception:  # noqa: BLE001 - one failing benchmark must not hide the others' numbers
            traceback.print_exc()
            notes.append(f"{entry}: FAILED after {time.monotonic() - started:.0f} s (traceback above)")
            failed = True
            continue
        notes.append(f"{entry}: {time.monotonic() - started:.0f} s")
    print("\n" + Result.table(results))
    if args.quick:
        notes.append("--quick: short runs on small data; the numbers are indicative only")
    if notes:
        print("\n" + "\n".join(f"- {note}" for note in notes))
    if args.json:
        args.json.write_text(json.dumps([r.as_dict() for r in results], indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
