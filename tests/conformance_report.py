"""Per-op summary of the ONNX node conformance suite (tests/test_conformance.py).

    python tests/conformance_report.py            # table: op, cases, passed, unsupported, failed
    python tests/conformance_report.py -v         # also list every unsupported/failed case
    python tests/conformance_report.py -j 4       # build with 4 workers (default: usable CPUs)

A case counts once under every supported op its graph uses (nearly always exactly one), so
the per-op rows can sum to more than the total line, which counts each case once. Builds go
through Inferon's cache (INFERON_CACHE_DIR), so a run after the test suite is quick.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import test_conformance as tc  # noqa: E402

from inferon.frontend.onnx.registry import supported_ops  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-j", "--jobs", type=int, default=None, help="parallel builds")
    parser.add_argument("-v", "--verbose", action="store_true", help="list unsupported and failed cases")
    parser.add_argument("-k", "--filter", default="", help="only cases whose name contains this")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    cases = tc.selected_cases()
    names = sorted(n for n in cases if args.filter in n)
    outcomes = tc.run_all(names, jobs=args.jobs)
    elapsed = time.perf_counter() - start

    supported = supported_ops()
    per_op: dict[str, Counter[str]] = {op: Counter() for op in supported}
    for name, outcome in outcomes.items():
        for op in sorted(set(tc.case_ops(cases[name])) & set(supported)):
            per_op[op][outcome.status] += 1

    header = f"{'op':<20} {'cases':>5} {'passed':>6} {'unsupported':>11} {'follows-ort':>11} {'failed':>6}"
    print(header)
    print("-" * len(header))
    for op in supported:
        c = per_op[op]
        total = sum(c.values())
        print(f"{op:<20} {total:>5} {c[tc.PASS]:>6} {c[tc.UNSUPPORTED]:>11} {c[tc.FOLLOWS_ORT]:>11} {c[tc.FAIL]:>6}")
    totals = Counter(o.status for o in outcomes.values())
    print("-" * len(header))
    print(f"{'total':<20} {len(outcomes):>5} {totals[tc.PASS]:>6} {totals[tc.UNSUPPORTED]:>11} "
          f"{totals[tc.FOLLOWS_ORT]:>11} {totals[tc.FAIL]:>6}")
    print(f"\n({len(outcomes)} ONNX node test cases selected, {elapsed:.0f} s)")

    if args.verbose:
        for status in (tc.UNSUPPORTED, tc.FOLLOWS_ORT, tc.FAIL):
            listed = [(n, o) for n, o in sorted(outcomes.items()) if o.status == status]
            if listed:
                print(f"\n{status}:")
                for name, outcome in listed:
                    print(f"  {name}: {outcome.message[:300]}")
    return 1 if totals[tc.FAIL] else 0


if __name__ == "__main__":
    sys.exit(main())
