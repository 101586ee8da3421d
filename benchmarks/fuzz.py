"""The property-based fuzz suite (tests/test_fuzz.py) with many more examples than the
normal test command runs.

    python benchmarks/fuzz.py [--examples 300]

Runs pytest on tests/test_fuzz.py with ``ANAS_FUZZ_EXAMPLES`` set, prints pytest's summary
and writes benchmarks/results/fuzz.json: examples per test, outcome per test, seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=300, help="examples per test (the suite runs 12)")
    args = parser.parse_args()
    env = {**os.environ, "ANAS_FUZZ_EXAMPLES": str(args.examples)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "tests/test_fuzz.py", "-p", "no:warnings", "-rA", "-q"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    per_test = {}
    for outcome, test in re.findall(r"^(PASSED|FAILED|ERROR) tests/test_fuzz.py::(\w+)", done.stdout, re.M):
        per_test[test] = outcome.lower()
    result = {"examples_per_test": args.examples, "tests": per_test, "exit_code": done.returncode,
              "seconds": round(seconds, 1), "python": platform.python_version(), "platform": platform.platform()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fuzz.json").write_text(json.dumps(result, indent=2) + "\n")
    print(done.stdout[-3000:])
    print(f"{sum(v == 'passed' for v in per_test.values())} of {len(per_test)} tests passed with "
          f"{args.examples} examples each in {seconds:.0f} s; written to {RESULTS / 'fuzz.json'}")
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
