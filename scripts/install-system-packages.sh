#!/usr/bin/env bash
# Install the Debian packages the test suite needs, only when one is missing.
set -euo pipefail

packages=(postgresql postgresql-client redis-server docker.io docker-compose sqlite3
          debootstrap busybox-static openssl python3-venv curl shellcheck nginx-light
          pgbackrest logrotate)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && { echo "system packages: all present"; exit 0; }

echo "system packages: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
# Keep the packages' maintainer scripts from starting their services (PostgreSQL's `main` cluster, a
# redis-server with the packaged settings, a Docker engine with its default bridge network) through
# systemd or init scripts: scripts/services.sh starts each of them itself, on loopback, with host
# networking only.  Debian's policy-rc.d hook does this (exit 101: "action forbidden"); a machine that
# already has one (Docker images ship one) keeps it, otherwise ours is there only during the install.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# runbook.ops scripts/install-system-packages.sh: no service starts while it installs packages.\nexit 101\n' \
        | $sudo tee "$policy" >/dev/null
    $sudo chmod 0755 "$policy"
    trap '$sudo rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
