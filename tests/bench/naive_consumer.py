#!/usr/bin/python3
"""The baseline walbust is compared with: a cache invalidator as a team would write it by hand.

psycopg2's LogicalReplicationConnection streams pgoutput (proto_version 1), this script
decodes the messages itself, renders the blog rules' keys (rules/blog.yaml, hard-coded as
such a script would have them) from the new and the old row, sends one Redis pipeline per
transaction at its commit and then acknowledges the commit's end LSN. Nothing clever: no
batching across transactions, no streaming of large transactions, one thread.

Prints one JSON line with its counters on stdout when it stops. It stops at --endpos
(like pg_recvlogical) or on SIGTERM/SIGINT.
"""

import argparse
import json
import select
import signal
import struct
import sys

import psycopg2
import psycopg2.extras
import redis

# The blog rules: every template is rendered for each row image the change has.
POST_TEMPLATES = ("post_detail_{id}", "home_page_posts", "category_posts_{category_id}",
                  "author_posts_{author_id}")
IGNORED_COLUMNS = {"view_count"}  # ignore_changes: [view_count]

stop_requested = False


def request_stop(signum, frame):
    global stop_requested
    stop_requested = True


def parse_lsn(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


class Reader:
    """Cursor over one pgoutput message."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def byte(self):
        b = self.data[self.pos]
        self.pos += 1
        return b

    def int16(self):
        (v,) = struct.unpack_from("!h", self.data, self.pos)
        self.pos += 2
        return v

    def int32(self):
        (v,) = struct.unpack_from("!i", self.data, self.pos)
        self.pos += 4
        return v

    def int64(self):
        (v,) = struct.unpack_from("!q", self.data, self.pos)
        self.pos += 8
        return v

    def string(self):
        end = self.data.index(b"\0", self.pos)
        s = self.data[self.pos:end].decode()
        self.pos = end + 1
        return s

    def tuple(self, columns):
        """TupleData as {column: text or None}; unchanged TOAST values ('u') are left out."""
        n = self.int16()
        row = {}
        for i in range(n):
            kind = self.byte()
            if kind == ord("n"):
                row[columns[i]] = None
            elif kind == ord("t"):
                length = self.int32()
                row[columns[i]] = self.data[self.pos:self.pos + length].decode()
                self.pos += length
            # 'u': unchanged TOASTed value, not sent
        return row


def render(row):
    keys = []
    for t in POST_TEMPLATES:
        try:
            keys.append(t.format(**row) if "{" in t else t)
        except KeyError:
            pass  # column not sent
    return keys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dsn", required=True)
    p.add_argument("--slot", required=True)
    p.add_argument("--publication", required=True)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--endpos", help="stop once everything up to this LSN is deleted and acknowledged")
    args = p.parse_args()
    endpos = parse_lsn(args.endpos) if args.endpos else None
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    r = redis.Redis.from_url(args.redis_url)
    conn = psycopg2.connect(args.dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    cur = conn.cursor()
    cur.start_replication(slot_name=args.slot, decode=False, status_interval=10,
                          options={"proto_version": "1", "publication_names": args.publication})

    relations = {}  # oid -> (qualified name, [column names])
    pipe = None
    in_txn = False
    changes = transactions = keys_sent = 0
    acked = 0

    def change(oid, old, new):
        nonlocal changes, keys_sent
        changes += 1
        name, _ = relations[oid]
        if name != "public.blog_post":
            return
        if old is not None and new is not None:
            differing = {c for c in new if old.get(c, new[c]) != new[c]}
            if differing and differing <= IGNORED_COLUMNS:
                return
        keys = []
        for row in (new, old):
            if row is not None:
                for k in render(row):
                    if k not in keys:
                        keys.append(k)
        if keys:
            pipe.unlink(*keys)
            keys_sent += len(keys)

    while not stop_requested:
        msg = cur.read_message()
        if msg is None:
            if endpos is not None and not in_txn and cur.wal_end >= endpos:
                break
            # Wake at least every second to notice the end position and signals.
            try:
                select.select([cur], [], [], 1.0)
            except InterruptedError:
                pass
            continue
        m = Reader(msg.payload)
        kind = chr(m.byte())
        if kind == "B":
            final_lsn = m.int64()
            if endpos is not None and final_lsn > endpos:
                break  # commits after endpos are not ours to read
            in_txn = True
            pipe = r.pipeline(transaction=False)
        elif kind == "C":
            m.byte()  # flags
            m.int64()  # commit LSN
            end_lsn = m.int64()
            pipe.execute()  # raises on a Redis error: nothing is acknowledged then
            pipe = None
            in_txn = False
            transactions += 1
            cur.send_feedback(flush_lsn=end_lsn)
            acked = end_lsn
            if endpos is not None and end_lsn >= endpos:
                break
        elif kind == "R":
            oid = m.int32()
            namespace = m.string()
            relname = m.string()
            m.byte()  # replica identity setting
            ncols = m.int16()
            cols = []
            for _ in range(ncols):
                m.byte()  # flags
                cols.append(m.string())
                m.int32()  # type oid
                m.int32()  # type modifier
            relations[oid] = (f"{namespace}.{relname}", cols)
        elif kind == "I":
            oid = m.int32()
            m.byte()  # 'N'
            change(oid, None, m.tuple(relations[oid][1]))
        elif kind == "U":
            oid = m.int32()
            cols = relations[oid][1]
            tag = chr(m.byte())
            old = None
            if tag in "KO":
                old = m.tuple(cols)
                if tag == "K":
                    old = {c: v for c, v in old.items() if v is not None}  # only key columns are real
                m.byte()  # 'N'
            change(oid, old, m.tuple(cols))
        elif kind == "D":
            oid = m.int32()
            tag = chr(m.byte())
            old = m.tuple(relations[oid][1])
            if tag == "K":
                old = {c: v for c, v in old.items() if v is not None}
            change(oid, old, None)
        # 'Y' (type), 'O' (origin), 'T' (truncate: no rows, nothing the blog rule can render)
        # and 'M' are ignored.

    if acked:
        cur.send_feedback(flush_lsn=acked, force=True)
    conn.close()
    json.dump({"changes": changes, "transactions": transactions, "keys": keys_sent}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
