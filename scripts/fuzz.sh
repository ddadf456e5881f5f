#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang 14, replays the saved crash
# reproducers, then fuzzes each target for a bounded time.
#
#   scripts/fuzz.sh [SECONDS]   SECONDS per target, default 60; 0 builds and replays only
#
# Each run starts from a fresh copy of the committed seed corpus inside the build
# directory, so fuzzing never grows tests/fuzz/corpus. Exits non-zero when a target
# crashes (or leaks, times out, runs out of memory) and prints the input that did it and
# the command that reproduces it. Build directory: $WALBUST_FUZZ_BUILD_DIR or build-fuzz.
set -euo pipefail

SECONDS_PER_TARGET="${1:-60}"
if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 [SECONDS]" >&2
  exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${WALBUST_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
FUZZ_SRC="$ROOT/tests/fuzz"
TARGETS=(fuzz_pgoutput fuzz_rules)

# target -> corpus directory, dictionary, longest input: room for the longest seed (the
# whole captured stream, 10.7 kB, most of it one 9.6 kB text value; a 3.5 kB rules file)
# without inviting inputs so large that runs slow down.
declare -A CORPUS=([fuzz_pgoutput]=pgoutput [fuzz_rules]=rules)
declare -A DICT=([fuzz_pgoutput]=pgoutput.dict [fuzz_rules]=rules.dict)
declare -A MAX_LEN=([fuzz_pgoutput]=12288 [fuzz_rules]=4096)

# clang and its runtime (libFuzzer, sanitizers) are not part of a plain build machine.
missing=()
for p in clang-14 libclang-rt-14-dev; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "fuzz: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "fuzz: building in $BUILD"
mkdir -p "$BUILD"
CC=clang-14 CXX=clang++-14 cmake -S "$ROOT" -B "$BUILD" -DWALBUST_FUZZ=ON \
  -DWALBUST_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$BUILD/configure.log" 2>&1 ||
  { cat "$BUILD/configure.log"; exit 1; }
cmake --build "$BUILD" --target "${TARGETS[@]}" -j2

status=0
report_failure() {  # target, log, artifact dir
  local target="$1" log="$2" artifacts="$3" bin="$BUILD/tests/fuzz/$1"
  status=1
  echo "fuzz: $target FAILED; the end of its log ($log):"
  tail -n 60 "$log"
  shopt -s nullglob
  for input in "$artifacts"/crash-* "$artifacts"/leak-* "$artifacts"/timeout-* "$artifacts"/oom-*; do
    echo "fuzz: $target input that failed: $input"
    echo "fuzz:   hex: $(head -c 512 "$input" | od -An -tx1 -v | tr -d ' \n')"
    echo "fuzz:   reproduce: $bin $input"
    echo "fuzz:   keep it as a regression: cp $input $FUZZ_SRC/regressions/$target/"
  done
  shopt -u nullglob
}

for target in "${TARGETS[@]}"; do
  bin="$BUILD/tests/fuzz/$target"
  work="$BUILD/fuzz-run/$target"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  common=(-timeout=10 -rss_limit_mb=2048 "-max_len=${MAX_LEN[$target]}"
          "-artifact_prefix=$work/artifacts/")

  # Inputs that once crashed a target stay fixed: libFuzzer runs files given as arguments.
  regressions=("$FUZZ_SRC/regressions/$target"/*)
  if [ -e "${regressions[0]}" ]; then
    echo "fuzz: $target: replaying ${#regressions[@]} saved reproducer(s)"
    if ! "$bin" "${common[@]}" "${regressions[@]}" >"$work/replay.log" 2>&1; then
      report_failure "$target" "$work/replay.log" "$work/artifacts"
      # Inputs run in order: the last one started is the one that failed.
      input="$(grep '^Running: ' "$work/replay.log" | tail -n 1 | cut -d' ' -f2-)"
      echo "fuzz: $target saved reproducer that fails: $input"
      echo "fuzz:   reproduce: $bin $input"
      continue
    fi
    grep '^Running: ' "$work/replay.log" | sed "s|^|fuzz: $target: |"
  fi
  [ "$SECONDS_PER_TARGET" -eq 0 ] && continue

  cp -r "$FUZZ_SRC/corpus/${CORPUS[$target]}/." "$work/corpus/"
  echo "fuzz: $target for ${SECONDS_PER_TARGET}s over $(ls "$work/corpus" | wc -l) seeds"
  if "$bin" "${common[@]}" "-max_total_time=$SECONDS_PER_TARGET" -print_final_stats=1 \
      "-dict=$FUZZ_SRC/${DICT[$target]}" "$work/corpus" >"$work/fuzz.log" 2>&1; then
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$work/fuzz.log" | sed "s|^|fuzz: $target: |"
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$work/fuzz.log" |
      sed "s|^|fuzz: $target: |"
  else
    report_failure "$target" "$work/fuzz.log" "$work/artifacts"
  fi
done

if [ "$status" -ne 0 ]; then
  echo "fuzz: FAILED (logs and inputs under $BUILD/fuzz-run)"
else
  echo "fuzz: ok"
fi
exit "$status"
