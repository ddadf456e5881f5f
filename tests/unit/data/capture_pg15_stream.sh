#!/bin/sh
# Regenerates pg15_pgoutput_stream.txt: starts a throwaway PostgreSQL 15 (run as root; the
# server runs as the postgres user), runs pg15_pgoutput_stream.sql, peeks the slot.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=/usr/lib/postgresql/15/bin
dir=$(mktemp -d /tmp/walbust-capture.XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
chown postgres "$dir"
as_pg() { runuser -u postgres -- "$@"; }
cleanup() { as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w start \
  -o "-p $port -k $dir -c listen_addresses='' -c wal_level=logical" >/dev/null
psql() { as_pg "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -d postgres "$@"; }
psql -t -f - <"$here/pg15_pgoutput_stream.sql" >/dev/null
sleep 1  # the last, non-transactional message is decodable only once its WAL is flushed
{
  sed -n '1,5p' "$here/pg15_pgoutput_stream.txt"
  psql -t -A -F' ' -c "SELECT lsn, xid, encode(data, 'hex') FROM pg_logical_slot_peek_binary_changes(
      's', NULL, NULL, 'proto_version', '1', 'publication_names', 'p', 'messages', 'true')"
} >"$dir/out.txt"
mv "$dir/out.txt" "$here/pg15_pgoutput_stream.txt"
