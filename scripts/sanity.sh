#!/usr/bin/env bash
# Run `ansible-test sanity` on the collection, without Docker.
#
# ansible-test needs the collection at .../ansible_collections/runbook/ops (it resolves the real
# working directory, so a symlink is not enough), so we test a fresh copy of the files git would
# ship: tracked plus untracked-but-not-ignored.  The copy gets its own `git init`: otherwise
# ansible-test finds this checkout's .git further up, where .build/ is ignored, and sees no files.
#
# --local --requirements: ansible-test runs on this venv's Python 3.11 (no Docker) and makes one
# virtualenv per sanity test with its pinned requirements from PyPI, leaving .venv alone.  Those
# virtualenvs live under .build/sanity/home (ansible-test keeps them in ~/.ansible/test/venv), so
# reruns reuse them and `make clean` drops them.  (--venv gives the same results but builds one
# more virtualenv for ansible-test itself on every run: about 5 s slower.)
#
# Usage: scripts/sanity.sh [extra ansible-test sanity arguments, e.g. --test pylint]
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
python_version=3.11
build="$repo/.build/sanity"
copy="$build/ansible_collections/runbook/ops"
home="$build/home"
started=$SECONDS

say() { printf 'sanity: [%3ds] %s\n' $((SECONDS - started)) "$*"; }

command -v ansible-test >/dev/null || { echo "sanity: ansible-test not on PATH (run via make sanity)" >&2; exit 2; }
command -v "python$python_version" >/dev/null || { echo "sanity: python$python_version not found" >&2; exit 2; }
# Without shellcheck ansible-test only warns and skips the shellcheck test: refuse instead.
command -v shellcheck >/dev/null || { echo "sanity: shellcheck not found (scripts/install-system-packages.sh installs it)" >&2; exit 2; }

cd "$repo"
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || { echo "sanity: $repo is not a git checkout" >&2; exit 2; }

# One run at a time: a second run would delete the copy under the first one.
mkdir -p "$build"
exec 9>"$build/lock"
flock -n 9 || { say "waiting for another sanity run to finish"; flock 9; }

say "copying the collection to $copy"
rm -rf "$copy"
mkdir -p "$copy" "$home"
git ls-files -z --cached --others --exclude-standard \
    | grep -zvE '^(\.venv|\.build|\.demo)/' \
    | while IFS= read -r -d '' path; do [ -e "$path" ] && printf '%s\0' "$path"; done \
    | tar --null --files-from=- -cf - \
    | tar -C "$copy" -xf -
git -C "$copy" init -q
# ansible-test writes its results to tests/output/ inside the copy; keep them out of the file list.
echo 'tests/output/' >> "$copy/.git/info/exclude"
say "$(git -C "$copy" ls-files --others --exclude-standard | wc -l) files to test"

# ansible-test passes only HOME (not PIP_* or XDG_*) to pip: reuse the real pip config and cache.
for dir in .config .cache; do
    if [ -d "$HOME/$dir" ] && [ ! -e "$home/$dir" ]; then ln -s "$HOME/$dir" "$home/$dir"; fi
done

# ansible-test bootstraps pip into each virtualenv with a get-pip.py it downloads from
# ci-files.testing.ansible.com, which CI cannot reach.  It uses a cached copy when one exists,
# so we put a stand-in there that bootstraps pip with the standard library's ensurepip and
# then installs the pinned pip (from PyPI) with the arguments ansible-test gives.
pip_version=$(python3 - <<'PY'
import os, re, ansible_test
source = open(os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")).read()
print(re.search(r"pip='([0-9.]+)'", source).group(1))
PY
)
get_pip="$home/.ansible/test/cache/get_pip_${pip_version//./_}.py"
mkdir -p "$(dirname "$get_pip")"
cat > "$get_pip" <<'PY'
"""Stand-in for get-pip.py, written by scripts/sanity.sh: ensurepip, then pip install <args>."""
import subprocess
import sys

args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--upgrade"] + args))
PY

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
