#!/usr/bin/env bash
# walbust performance benchmark: see tests/bench/README.md.
# Debian's python3 has psycopg2, redis-py and matplotlib; a python3 earlier on PATH may not.
exec /usr/bin/python3 "$(dirname "$0")/bench.py" "$@"
