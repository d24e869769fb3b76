"""`make bench` / `python -m bench [ingest|evaluate|analyze ...]`: run benchmarks, print one table.

Each benchmark module exposes `run() -> list[Result]`; a result pairs what we measure with the
baseline measured in the same run, so the ratio means something on any machine.
"""

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from bench.common import Result

ENTRIES = ["ingest", "evaluate", "analyze"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("entries", nargs="*", help=f"any of {', '.join(ENTRIES)} (default: all)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    results: list[Result] = []
    for entry in args.entries or ENTRIES:
        module = importlib.import_module(f"bench.{entry}")
        print(f"\n### {entry}", flush=True)
        results.extend(module.run())
    print("\n" + Result.table(results))
    if args.json:
        args.json.write_text(json.dumps([r.as_dict() for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
