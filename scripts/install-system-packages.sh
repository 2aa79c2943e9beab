#!/usr/bin/env bash
# Install the Debian packages the test suite needs, only when one is missing.
set -euo pipefail

packages=(postgresql postgresql-client redis-server docker.io docker-compose sqlite3
          debootstrap busybox-static openssl python3-venv curl shellcheck)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && { echo "system packages: all present"; exit 0; }

echo "system packages: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
# Keep the PostgreSQL package from starting a cluster through systemd; we start it ourselves.
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
