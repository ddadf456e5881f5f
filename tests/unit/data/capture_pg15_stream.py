#!/usr/bin/python3
"""Regenerates pg15_pgoutput_stream.txt from a throwaway PostgreSQL 15 of the test lab
(tests/integration/fixtures.py; run as root, the server runs as the postgres user): runs
pg15_pgoutput_stream.sql statement by statement and peeks the slot it creates.

The unit tests that read the file check its LSNs and xids (change_stream_test.cpp,
pgoutput_test.cpp): after regenerating, update them to the new values.

  capture_pg15_stream.py [--out FILE]   (default: pg15_pgoutput_stream.txt beside this script)
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration"))

import fixtures  # noqa: E402

CAPTURE = os.path.join(HERE, "pg15_pgoutput_stream.txt")
PEEK = ("SELECT lsn::text, xid::text, encode(data, 'hex') FROM pg_logical_slot_peek_binary_changes("
        "'s', NULL, NULL, 'proto_version', '1', 'publication_names', 'p', 'messages', 'true')")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=CAPTURE)
    args = parser.parse_args()
    with open(CAPTURE) as f:
        header = [line for line in f if line.startswith("#")]
    with open(os.path.join(HERE, "pg15_pgoutput_stream.sql")) as f:
        statements = [line.strip() for line in f if line.strip()]
    with fixtures.PostgresServer() as pg:
        # One statement at a time, as psql -f sends them: the slot must be created outside
        # any transaction that wrote, and BEGIN/COMMIT frame the captured transactions.
        conn = pg.connect(user=pg.SUPERUSER)
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
        conn.close()
        time.sleep(1)  # the last, non-transactional message is decodable once its WAL is flushed
        rows = pg.query(PEEK, user=pg.SUPERUSER)
    with open(args.out + ".tmp", "w") as f:
        f.writelines(header)
        f.writelines(f"{lsn} {xid} {data}\n" for lsn, xid, data in rows)
    os.replace(args.out + ".tmp", args.out)
    print(f"{len(rows)} messages written to {args.out}")


if __name__ == "__main__":
    main()
