#!/usr/bin/env bash
# The walbust demo: throwaway PostgreSQL 15 + Redis, a small blog, a warm cache, and
# `walbust run` deleting exactly the cached pages that SQL changes make stale.
#
#   scripts/demo.sh
#
# Installs missing dependencies (scripts/deps.sh), builds walbust (Release) into build/
# when needed, then runs scripts/demo.py. Everything it starts lives in temporary
# directories on free ports and is removed on exit. Exits non-zero if walbust deleted a
# key it should keep or kept one it should delete.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

if [ -z "${WALBUST_BIN:-}" ]; then
  echo "== building walbust (Release) in build/"
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j"${WALBUST_BUILD_JOBS:-2}" --target walbust >/dev/null
  export WALBUST_BIN="$PWD/build/walbust"
fi

demo_pid=""
cleanup() {
  # demo.py stops its servers itself (also on SIGTERM); this only makes sure it does.
  if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
    kill -TERM "$demo_pid" 2>/dev/null || true
    wait "$demo_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

/usr/bin/python3 scripts/demo.py &
demo_pid=$!
set +e
wait "$demo_pid"
status=$?
set -e
demo_pid=""
exit "$status"
