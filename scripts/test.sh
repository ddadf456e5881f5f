#!/usr/bin/env bash
# The project's test command; CI runs it through .ci/run.
#
#   scripts/test.sh                 all tests: Release build, then an ASan+UBSan build
#   scripts/test.sh --quick         Release build only (no sanitizer build)
#   scripts/test.sh --label unit    only tests with this ctest label
#                                   (unit|integration|fault|systemd)
#
# Installs missing dependencies (scripts/deps.sh), checks the C++ formatting
# (scripts/format.sh --check), configures and builds into build/
# (Release) and runs every test with ctest, the .deb under a real systemd included
# (label systemd); then builds build-asan/ with -DWALBUST_SANITIZE=ON (Debug) and runs the
# unit and integration tests against the sanitized binary. Idempotent; exits non-zero if
# any build or test fails.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

quick=0
label=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --label) [ $# -ge 2 ] || { usage >&2; exit 2; }; label="$2"; shift ;;
    --label=*) label="${1#--label=}" ;;
    -h|--help) usage; exit 0 ;;
    *) echo "test.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

# Two cores are shared with other work on the build machines: never build wider.
jobs="${WALBUST_BUILD_JOBS:-2}"
# systemd: the packaged unit in a throwaway machine; Release only, like a user's .deb.
release_labels="${label:-unit|integration|fault|systemd}"
# Fault tests restart servers many times and are timing-heavy: under the sanitizers'
# slowdown they prove little more than the Release run, so only unit and integration.
asan_labels="${label:-unit|integration}"

summaries=()
status=0

run_ctest() {  # NAME BUILD_DIR LABELS
  local name="$1" dir="$2" labels="$3" out rc
  out="$(mktemp)"
  echo "== ctest ($name): -L '$labels'"
  set +e
  ctest --test-dir "$dir" --output-on-failure --no-tests=error -L "$labels" 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  set -e
  summaries+=("[$name] $(grep -E 'tests passed|tests failed' "$out" | tail -n1 || true)")
  if [ "$rc" -ne 0 ]; then
    status=1
    while IFS= read -r line; do summaries+=("[$name] $line"); done \
      < <(sed -n '/The following tests FAILED:/,$p' "$out" | grep -E '^\s+[0-9]+ - ' || true)
  fi
  rm -f "$out"
}

bash scripts/deps.sh

# Unformatted C++ fails the test command before anything is built.
bash scripts/format.sh --check

echo "== build (Release) in build/"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DWALBUST_SANITIZE=OFF >/dev/null
cmake --build build -j"$jobs"
run_ctest release build "$release_labels"

# The systemd tests install the Release .deb; they have no sanitized variant.
if [ "$quick" -eq 0 ] && [ "$asan_labels" != systemd ]; then
  echo "== build (ASan+UBSan, Debug) in build-asan/"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DWALBUST_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$jobs"
  # Leak detection stays on: walbust must exit (SIGTERM, --endpos) without leaks.
  # halt_on_error makes any UBSan finding fail the test instead of only printing.
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    run_ctest asan build-asan "$asan_labels"
fi

echo
echo "== summary"
printf '%s\n' "${summaries[@]}"
exit "$status"
