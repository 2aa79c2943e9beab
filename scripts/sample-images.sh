#!/usr/bin/env bash
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Build the local Docker images of the sample service, only where missing or stale:
#   rbops-base:bookworm   Debian bookworm minbase + python3, python3-cryptography, python3-psycopg2
#                         (debootstrap from deb.debian.org, then `docker import`)
#   rbops-sample:v1..v5   FROM the base, sample_service/app.py at /app/app.py (sample_service/image/Dockerfile)
#
#   sample-images.sh            build what is missing or stale
#   sample-images.sh --check    exit 0 when every image is present and current, 1 otherwise; builds nothing
#   sample-images.sh --rebuild  build everything again
#   RBOPS_DEBIAN_MIRROR         the Debian mirror of the base image (default http://deb.debian.org/debian)
#
# Every image carries the label org.runbook-ops.inputs: a hash of what it is built from (the debootstrap
# recipe; the Dockerfile, app.py, the version's settings and the base image id).  An image whose label
# differs from the current inputs is rebuilt, so a changed app.py never leaves a stale image behind.
# A lock file serialises concurrent runs (several test sessions on one engine).  No registry is used;
# builds use host networking (the engine has no bridge network).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image_dir="$here/sample_service/image"
app="$here/sample_service/app.py"
base_image=rbops-base:bookworm
sample_repo=rbops-sample
label=org.runbook-ops.inputs
mirror=${RBOPS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# python3-cffi-backend: python3-cryptography needs it through a virtual package debootstrap does not resolve.
packages=python3,python3-cryptography,python3-cffi-backend,python3-psycopg2
app_uid=10001
lock_file=${RBOPS_IMAGES_LOCK:-${TMPDIR:-/tmp}/rbops-sample-images.lock}

# version  schema head  extra build arguments (the version's knobs)
versions=(
    "v1 1"
    "v2 2"
    "v3 2 FAIL_READY=true"
    "v4 3 MIGRATION_FAIL=true"
    "v5 2 CRASH_AFTER=10"
)

mode=build
case "${1:-}" in
    "") ;;
    --check) mode=check ;;
    --rebuild) mode=rebuild ;;
    -h|--help) sed -n '4,19p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--check|--rebuild]" >&2; exit 2 ;;
esac

started=$EPOCHREALTIME
say() {  # progress line with the time since the start
    printf 'sample-images: [%6ss] %s\n' "$(awk -v s="$started" -v n="$EPOCHREALTIME" 'BEGIN { printf "%.1f", n - s }')" "$*"
}

command -v docker >/dev/null || { echo "sample-images: docker is not installed" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "sample-images: the Docker engine is not running (scripts/services.sh start)" >&2; exit 1; }


current_label() {  # current_label IMAGE: the inputs label, empty when the image is missing
    docker image inspect --format "{{index .Config.Labels \"$label\"}}" "$1" 2>/dev/null || true
}

sample_hash() {  # sample_hash BASE_ID VERSION HEAD ARGS...: hash of everything a sample image is built from
    { cat "$image_dir/Dockerfile" "$app"; printf '%s\n' "$@"; } | sha256sum | cut -c1-16
}

build_base() {
    local root
    command -v debootstrap >/dev/null || { echo "sample-images: debootstrap is not installed (scripts/install-system-packages.sh)" >&2; exit 1; }
    root=$(mktemp -d "${TMPDIR:-/tmp}/rbops-base.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$root' '$root.log'" EXIT
    say "debootstrap bookworm minbase ($packages) from $mirror"
    if ! debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" >"$root.log" 2>&1; then
        tail -5 "$root.log" >&2
        grep -v '^dpkg: warning' "$root/debootstrap/debootstrap.log" 2>/dev/null | tail -15 >&2 || true
        echo "sample-images: debootstrap failed" >&2
        exit 1
    fi
    rm -f "$root.log"
    # The service's user and data directory; drop what an image does not need.
    chroot "$root" groupadd --gid "$app_uid" app
    chroot "$root" useradd --uid "$app_uid" --gid "$app_uid" --home-dir /data --no-create-home --shell /usr/sbin/nologin app
    install -d -m 0700 -o "$app_uid" -g "$app_uid" "$root/data"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
        "$root"/usr/share/man/* "$root"/usr/share/locale/*
    say "docker import $base_image"
    tar -C "$root" --numeric-owner -c . | docker import \
        --change "LABEL $label=$base_hash" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
        --change 'CMD ["python3"]' - "$base_image" >/dev/null
    rm -rf "$root"
    trap - EXIT
}

# The recipe of the base image is build_base itself: change it and the base (and so every sample image)
# is rebuilt.  The mirror is not part of it.
base_hash=$({ declare -f build_base; echo "$packages $app_uid"; } | sha256sum | cut -c1-16)

build_sample() {  # build_sample VERSION HEAD HASH ARGS...
    local version=$1 head=$2 hash=$3 context
    shift 3
    local build_args=(--build-arg "BASE=$base_image" --build-arg "VERSION=$version" --build-arg "SCHEMA_HEAD=$head")
    local arg
    for arg in "$@"; do build_args+=(--build-arg "$arg"); done
    context=$(mktemp -d "${TMPDIR:-/tmp}/rbops-sample.XXXXXX")
    cp "$image_dir/Dockerfile" "$app" "$context/"
    if ! docker build --network host --quiet --label "$label=$hash" "${build_args[@]}" \
            -t "$sample_repo:$version" "$context" >"$context.log" 2>&1; then
        cat "$context.log" >&2
        rm -rf "$context" "$context.log"
        echo "sample-images: docker build of $sample_repo:$version failed" >&2
        exit 1
    fi
    rm -rf "$context" "$context.log"
}

exec 9>"$lock_file"
if ! flock -n 9; then
    say "waiting for another sample-images.sh run ($lock_file)"
    flock 9
fi

stale=0
replaced=()  # ids of the images a rebuild replaced: removed at the end (samples first, then the old base)
if [ "$mode" = rebuild ] || [ "$(current_label "$base_image")" != "$base_hash" ]; then
    if [ "$mode" = check ]; then
        say "$base_image is missing or stale"
        stale=1
    else
        [ "$(id -u)" = 0 ] || { echo "sample-images: building $base_image needs root (debootstrap, chroot)" >&2; exit 1; }
        old=$(docker image inspect --format '{{.Id}}' "$base_image" 2>/dev/null || true)
        build_base
        [ -z "$old" ] || replaced=("$old" "${replaced[@]}")
        say "built $base_image"
    fi
else
    say "$base_image is current"
fi
base_id=$(docker image inspect --format '{{.Id}}' "$base_image" 2>/dev/null || echo missing)

for entry in "${versions[@]}"; do
    read -r -a fields <<<"$entry"
    version=${fields[0]}
    head=${fields[1]}
    extra=("${fields[@]:2}")
    hash=$(sample_hash "$base_id" "$version" "$head" "${extra[@]}")
    if [ "$mode" != rebuild ] && [ "$(current_label "$sample_repo:$version")" = "$hash" ]; then
        say "$sample_repo:$version is current"
    elif [ "$mode" = check ]; then
        say "$sample_repo:$version is missing or stale"
        stale=1
    else
        old=$(docker image inspect --format '{{.Id}}' "$sample_repo:$version" 2>/dev/null || true)
        build_sample "$version" "$head" "$hash" "${extra[@]}"
        [ -z "$old" ] || replaced=("$old" "${replaced[@]}")
        say "built $sample_repo:$version (SCHEMA_HEAD=$head${extra[*]:+ ${extra[*]}})"
    fi
done
for old in "${replaced[@]}"; do
    # Only when nothing uses it any more (no tag, no container, no child image): the cache stays small.
    if [ -z "$(docker image inspect --format '{{join .RepoTags ","}}' "$old" 2>/dev/null)" ]; then
        docker image rm "$old" >/dev/null 2>&1 || true
    fi
done
say "done"
exit $stale
