#!/usr/bin/env bash
# The Django blog example in one command, from a fresh clone:
#
#   examples/django_blog/run.sh           scripted walkthrough (about 20 s)
#   examples/django_blog/run.sh --serve   Django's dev server on http://127.0.0.1:8000/
#
# Installs the Debian packages (scripts/deps.sh), builds walbust, then starts throwaway
# PostgreSQL and Redis servers in a temporary directory, migrates, seeds a few posts and
# runs walbust next to Django. Everything is removed on exit.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

"$root/scripts/deps.sh"
cmake -S "$root" -B "$root/build" >/dev/null
cmake --build "$root/build" --target walbust -j2
# Debian's Django and psycopg2 live in the system interpreter, whatever python3 is on PATH.
exec /usr/bin/python3 "$here/demo.py" --walbust "$root/build/walbust" "$@"
