#!/usr/bin/env bash
# Formats walbust's C and C++ sources with clang-format 14 and the repository's .clang-format.
#
#   scripts/format.sh            rewrite every .c/.cpp/.h file git tracks or would track
#   scripts/format.sh --check    change nothing; list the files that differ and exit 1 if any
#
# scripts/test.sh runs the check first, so unformatted code fails the test command.
set -euo pipefail
cd "$(dirname "$0")/.."

check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "format.sh: unknown argument: $1" >&2; exit 2 ;;
esac

formatter="$(command -v clang-format-14 || command -v clang-format || true)"
if [ -z "$formatter" ]; then
  echo "format.sh: clang-format not found (scripts/deps.sh installs clang-format-14)" >&2
  exit 2
fi
if ! "$formatter" --version | grep -q 'version 14\.'; then
  echo "format.sh: $formatter is not clang-format 14; results would differ from the check" >&2
  exit 2
fi

# Untracked files too (not ignored ones): a new file is formatted before its first commit.
mapfile -t files < <(git ls-files --cached --others --exclude-standard '*.c' '*.cpp' '*.h' |
  grep -v '^tests/fuzz/corpus/')
if [ "$check" -eq 0 ]; then
  "$formatter" -i "${files[@]}"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  "$formatter" --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ "${#bad[@]}" -gt 0 ]; then
  echo "format.sh: ${#bad[@]} file(s) differ from .clang-format; run scripts/format.sh:" >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi
echo "format: ${#files[@]} files formatted"
