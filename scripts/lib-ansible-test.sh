# shellcheck shell=bash
# Shared by scripts/sanity.sh and scripts/units.sh (source it; not run on its own): the set-up ansible-test
# needs on this machine, without Docker.
#
# ansible-test needs the collection at .../ansible_collections/runbook/ops (it resolves the real working
# directory, so a symlink is not enough), so we test a fresh copy of the files git would ship: tracked plus
# untracked-but-not-ignored.  The copy gets its own `git init`: otherwise ansible-test finds this checkout's
# .git further up, where .build/ is ignored, and sees no files.
#
# ansible-test keeps the virtualenvs it makes in ~/.ansible/test/venv, so each script gives it a HOME under
# .build/<name>/home: reruns reuse them and `make clean` drops them.
#
# Usage: AT_NAME=<name>; source scripts/lib-ansible-test.sh; at_prepare
#   then: cd "$AT_COPY" && HOME="$AT_HOME" ansible-test ...
# Sets: AT_REPO, AT_PYTHON (the X.Y to test with), AT_BUILD, AT_COPY, AT_HOME; at_say prints with the
# elapsed time.

AT_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
AT_PYTHON=3.11
AT_BUILD="$AT_REPO/.build/${AT_NAME:?set AT_NAME before sourcing lib-ansible-test.sh}"
AT_COPY="$AT_BUILD/ansible_collections/runbook/ops"
AT_HOME="$AT_BUILD/home"
AT_STARTED=$SECONDS

at_say() { printf '%s: [%3ds] %s\n' "$AT_NAME" $((SECONDS - AT_STARTED)) "$*"; }
at_die() { printf '%s: %s\n' "$AT_NAME" "$*" >&2; exit 2; }

at_prepare() {
    command -v ansible-test >/dev/null || at_die "ansible-test not on PATH (run via make $AT_NAME)"
    command -v "python$AT_PYTHON" >/dev/null || at_die "python$AT_PYTHON not found"
    cd "$AT_REPO" || exit 2
    git rev-parse --is-inside-work-tree >/dev/null 2>&1 || at_die "$AT_REPO is not a git checkout"

    # One run at a time: a second run would delete the copy under the first one.  The lock stays held
    # (file descriptor 9) until the calling script exits.
    mkdir -p "$AT_BUILD"
    exec 9>"$AT_BUILD/lock"
    flock -n 9 || { at_say "waiting for another $AT_NAME run to finish"; flock 9; }

    at_copy
    at_home
}

at_copy() {
    at_say "copying the collection to $AT_COPY"
    rm -rf "$AT_COPY"
    mkdir -p "$AT_COPY" "$AT_HOME"
    git ls-files -z --cached --others --exclude-standard \
        | grep -zvE '^(\.venv|\.build|\.demo)(/|$)' \
        | while IFS= read -r -d '' path; do [ -e "$path" ] && printf '%s\0' "$path"; done \
        | tar --null --files-from=- -cf - \
        | tar -C "$AT_COPY" -xf -
    git -C "$AT_COPY" init -q
    # ansible-test writes its results to tests/output/ inside the copy; keep them out of the file list.
    echo 'tests/output/' >> "$AT_COPY/.git/info/exclude"
    at_say "$(git -C "$AT_COPY" ls-files --others --exclude-standard | wc -l) files in the copy"
}

at_home() {
    # ansible-test passes only HOME (not PIP_* or XDG_*) to pip: reuse the real pip config and cache.
    local dir
    for dir in .config .cache; do
        if [ -d "$HOME/$dir" ] && [ ! -e "$AT_HOME/$dir" ]; then ln -s "$HOME/$dir" "$AT_HOME/$dir"; fi
    done

    # ansible-test bootstraps pip into each virtualenv with a get-pip.py it downloads from
    # ci-files.testing.ansible.com, which CI cannot reach.  It uses a cached copy when one exists,
    # so we put a stand-in there that bootstraps pip with the standard library's ensurepip and
    # then installs the pinned pip (from PyPI) with the arguments ansible-test gives.
    local pip_version get_pip
    pip_version=$(python3 - <<'PY'
import os, re, ansible_test
source = open(os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")).read()
print(re.search(r"pip='([0-9.]+)'", source).group(1))
PY
)
    get_pip="$AT_HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
    mkdir -p "$(dirname "$get_pip")"
    cat > "$get_pip" <<'PY'
"""Stand-in for get-pip.py, written by scripts/lib-ansible-test.sh: ensurepip, then pip install <args>."""
import subprocess
import sys

args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--upgrade"] + args))
PY
}
