# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark dispatcher: `python bench/run.py [backup|probe|files_sync|all] [suite options]` (default: all).

Each suite is a module bench/<suite>_bench.py with ``main(argv) -> int``.  A suite whose file
does not exist (yet) is skipped with a message.  Options after the suite name go to that suite;
with ``all`` every suite runs with its defaults.
"""

from __future__ import annotations

import importlib
import os
import sys

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
SUITES = ("backup", "probe", "files_sync")


def run_suite(name, argv):
    if not os.path.exists(os.path.join(BENCH_DIR, "%s_bench.py" % name)):
        print("== %s benchmark: skipped (bench/%s_bench.py does not exist)" % (name, name), flush=True)
        return 0
    print("== %s benchmark" % name, flush=True)
    module = importlib.import_module("%s_bench" % name)
    from _common import BenchSetupError  # pylint: disable=import-outside-toplevel
    try:
        return module.main(argv) or 0
    except BenchSetupError as exc:
        print("%s benchmark cannot run: %s" % (name, exc), file=sys.stderr, flush=True)
        return 2


def main(argv):
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    which = argv[0] if argv and not argv[0].startswith("-") else "all"
    rest = argv[1:] if argv and not argv[0].startswith("-") else argv
    if which not in SUITES + ("all",):
        print("unknown suite %r: choose one of %s or all" % (which, ", ".join(SUITES)), file=sys.stderr)
        return 2
    if which == "all":
        if rest:
            print("options go after a suite name, e.g. `bench/run.py backup --sizes 1`", file=sys.stderr)
            return 2
        codes = [run_suite(name, []) for name in SUITES]
        return max(codes)
    return run_suite(which, rest)


if __name__ == "__main__":
    sys.path.insert(0, BENCH_DIR)
    sys.exit(main(sys.argv[1:]))
