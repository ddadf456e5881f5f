#!/usr/bin/env bash
# Installs every build, test and demo dependency of walbust from Debian packages.
# Idempotent: packages already present are not fetched again, and apt's index is only
# refreshed when something is actually missing.
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake pkg-config git
  libpq-dev libhiredis-dev libyaml-cpp-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libcli11-dev nlohmann-json3-dev
  libcpp-httplib-dev libsystemd-dev libbenchmark-dev libssl-dev
  clang-14 libclang-rt-14-dev  # libFuzzer and sanitizer runtimes for scripts/fuzz.sh
  clang-format-14  # scripts/format.sh and the format check of scripts/test.sh
  # servers used by the demo and the integration tests
  postgresql-15 postgresql-client-15 redis-server redis-tools
  # test helpers (always used through /usr/bin/python3)
  python3 python3-psycopg2 python3-redis python3-django python3-django-redis
  # benchmark plots (tests/bench)
  python3-matplotlib
  # tools used by tests
  procps iproute2 util-linux systemd prometheus python3-yaml
  # the Debian 12 rootfs of the systemd tests (tests/systemd)
  debootstrap
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts a cluster and a redis service on install; the project never uses them
# (fixtures start their own throwaway servers), so stop them to free ports and memory.
if command -v pg_ctlcluster >/dev/null 2>&1; then
  for c in $(pg_lsclusters -h 2>/dev/null | awk '$4=="online"{print $1"/"$2}'); do
    $SUDO pg_ctlcluster "${c%/*}" "${c#*/}" stop || true
  done
fi
if command -v service >/dev/null 2>&1; then $SUDO service redis-server stop >/dev/null 2>&1 || true; fi
echo "deps: done"
