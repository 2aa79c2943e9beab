#!/usr/bin/env bash
# Run `ansible-test sanity` on the collection, without Docker.
#
# The copy of the collection, the private HOME and the get-pip stand-in: scripts/lib-ansible-test.sh.
#
# --local --requirements: ansible-test runs on this venv's Python 3.11 (no Docker) and makes one
# virtualenv per sanity test with its pinned requirements from PyPI, leaving .venv alone.  Those
# virtualenvs live under .build/sanity/home (ansible-test keeps them in ~/.ansible/test/venv), so
# reruns reuse them and `make clean` drops them.  (--venv gives the same results but builds one
# more virtualenv for ansible-test itself on every run: about 5 s slower.)
#
# Usage: scripts/sanity.sh [extra ansible-test sanity arguments, e.g. --test pylint]
set -euo pipefail

AT_NAME=sanity
# shellcheck source=scripts/lib-ansible-test.sh
source "$(dirname "$0")/lib-ansible-test.sh"
say() { at_say "$@"; }

# Without shellcheck ansible-test only warns and skips the shellcheck test: refuse instead.
command -v shellcheck >/dev/null || at_die "shellcheck not found (scripts/install-system-packages.sh installs it)"
at_prepare
python_version=$AT_PYTHON
copy=$AT_COPY
home=$AT_HOME

say "ansible-test sanity --local --requirements --python $python_version $*"
cd "$copy"
# Prefix each "Running sanity test" line with the elapsed time, so slow tests show.
set +e
HOME="$home" ansible-test sanity --local --requirements --python "$python_version" --junit --color no "$@" 2>&1 \
    | while IFS= read -r line; do
        case $line in
            "Running sanity test"*) say "${line#Running sanity test }" ;;
            *) printf '%s\n' "$line" ;;
        esac
    done
status=${PIPESTATUS[0]}
set -e

# One line per test from the junit files: which passed, which ansible-test skipped and why.
python3 - tests/output/junit <<'PY' || status=$((status ? status : 1))
import glob, os, sys
import xml.etree.ElementTree as ET

outcomes = {"passed": [], "skipped": [], "failed": []}
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.xml"))):
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name") or case.get("classname")
        skipped = case.find("skipped")
        if case.find("failure") is not None or case.find("error") is not None:
            outcomes["failed"].append(name)
        elif skipped is not None:
            reason = skipped.get("message") or skipped.text or ""
            outcomes["skipped"].append("%s (%s)" % (name, reason.strip()))
        else:
            outcomes["passed"].append(name)
for outcome, names in outcomes.items():
    print("sanity: %-7s %d: %s" % (outcome, len(names), ", ".join(sorted(set(names))) or "-"))
sys.exit(0 if outcomes["passed"] or outcomes["skipped"] else 1)
PY

if [ "$status" -eq 0 ]; then
    say "passed"
else
    say "FAILED (exit $status); results in $copy/tests/output/" >&2
fi
exit "$status"
