"""Tally a finished `mutmut run` per module: killed, survived, not reached by the fast tests.

Reads mutmut's result files under mutants/ (written by `mutmut run`, see docs/testing.md). In
catdog/evaluation.py only the scoring functions count (FUNCTIONS below): the rest of that module
reads a trained run and draws pictures, which the fast tests do not reach. Each module's killed
mutants are given as a share of those its selected tests reach, and of all its mutants.

    python scripts/mutation_score.py              # the table
    python scripts/mutation_score.py --survivors  # also each surviving mutant's name
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

MODULES = ["prediction", "splits", "folders", "config", "batches", "evaluation"]
# Functions counted per module; a module not listed counts whole. mutmut names a mutant
# catdog.<module>.x_<function>__mutmut_<n>, and a method x«Class»<method> (with U+01C1 separators).
FUNCTIONS = {"evaluation": {"scores", "mistakes", "shown_name", "write_photos_csv",
                            "ǁEvalReportǁto_dict", "ǁEvalReportǁtable"}}
# mutmut's exit codes (mutmut.stats.status_by_exit_code).
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", None: "not checked",
          36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout"}


def function_of(mutant: str) -> str:
    name = mutant.split(".", 2)[2]
    return re.sub(r"__mutmut_\d+$", "", name).removeprefix("x_").removeprefix("x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", default="mutants", help="mutmut's folder (default: mutants)")
    parser.add_argument("--survivors", action="store_true", help="list the surviving mutants' names")
    args = parser.parse_args()
    rows: list[tuple[str, int, int, int]] = []
    survivors: list[str] = []
    for module in MODULES:
        meta = Path(args.mutants) / "catdog" / f"{module}.py.meta"
        if not meta.is_file():
            print(f"{meta} not found: run `mutmut run` first (docs/testing.md)", file=sys.stderr)
            return 1
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        wanted = FUNCTIONS.get(module)
        counts: Counter[str] = Counter()
        for mutant, code in codes.items():
            if wanted is not None and function_of(mutant) not in wanted:
                continue
            status = STATUS.get(code, "suspicious")
            counts[status] += 1
            if status != "killed" and status != "no tests":
                survivors.append(f"{mutant}: {status}")
        reached = counts["killed"] + counts["survived"] + counts["timeout"] + counts["suspicious"]
        rows.append((module, counts["killed"], reached, reached + counts["no tests"] + counts["not checked"]))
    rows.append(("all", sum(r[1] for r in rows), sum(r[2] for r in rows), sum(r[3] for r in rows)))
    print(f"{'module':<12} {'killed':>6} {'reached':>7} {'of reached':>10} {'all':>5} {'of all':>7}")
    for module, killed, reached, total in rows:
        print(f"{module:<12} {killed:>6} {reached:>7} {killed / max(reached, 1):>10.1%} {total:>5} "
              f"{killed / max(total, 1):>7.1%}")
    if args.survivors:
        print("\n".join(survivors))
    return 0


if __name__ == "__main__":
    sys.exit(main())
