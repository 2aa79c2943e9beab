#!/usr/bin/env bash
# Run the unit tests of plugins/ (tests/unit/plugins/) under `ansible-test units`, without Docker.
#
# The copy of the collection, the private HOME and the get-pip stand-in: scripts/lib-ansible-test.sh.
#
# --venv --requirements: ansible-test makes a virtualenv (under .build/units/home) with its own unit test
# requirements (pytest, pytest-mock, pytest-xdist, mock) and tests/unit/requirements.txt, from the configured
# package index, leaving .venv alone (--local would install them into .venv).  The targets are
# tests/unit/plugins/: the tests beside it (test_dependencies.py, test_execution_environment.py) check the
# repository's packaging with ansible-builder, which is not a unit test requirement; `make unit` runs them.
#
# Usage: scripts/units.sh [extra ansible-test units arguments or targets]
set -euo pipefail

AT_NAME=units
# shellcheck source=scripts/lib-ansible-test.sh
source "$(dirname "$0")/lib-ansible-test.sh"
at_prepare

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(tests/unit/plugins/)
at_say "ansible-test units --venv --requirements --python $AT_PYTHON ${targets[*]}"
cd "$AT_COPY"
set +e
HOME="$AT_HOME" ansible-test units --venv --requirements --python "$AT_PYTHON" --color no "${targets[@]}"
status=$?
set -e
if [ "$status" -eq 0 ]; then
    at_say "passed"
else
    at_say "FAILED (exit $status); results in $AT_COPY/tests/output/" >&2
fi
exit "$status"
