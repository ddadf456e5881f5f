"""Fault injection: awkward data and schema changes while streaming (label `fault`).

- values used in keys and in delete_pattern templates: bytea, 1 MB text, unicode,
  quotes, newlines, control characters, glob characters, braces, the empty string;
- column types beyond text: json, jsonb, arrays, numeric, enums, composite types,
  domains, timestamptz;
- unchanged TOASTed values: taken from the old row with REPLICA IDENTITY FULL; without
  it the rendering is skipped, counted and warned about once (README "Writing rules");
- a table dropped, a column renamed and the publication altered while streaming.

Expected keys come from PostgreSQL itself (`col::text`), so the oracle never guesses a
type's text output. walbust must never crash, never lose an invalidation for a row it
can render, and a value must never widen a delete_pattern.
"""

import re
import unittest

import faultlib
import fixtures
from faultlib import SLOW, FaultCase, log, summary

REPEAT = faultlib.repeat(3)

ODD_TEXTS = [
    "plain", "with space", "quote'single", 'quote"double', "new\nline", "tab\there",
    "crlf\r\nend", "ünïcödé ✓ 🚀 日本語", "glob*star", "glob?q", "[br]acket", "back\\slash",
    "*", "?", "[", "]", "\\", "{braces}", "}{", "", "%s %n %x", "$(touch /tmp/x); `id`",
    "\x01\x02ctrl\x7f", "a" * 2000, "-", "ev:ins:*",
]
# Keys an unescaped pattern "pat:{t}:*" would match for some value above. No escaped
# pattern matches them, so they must survive.
PATTERN_DECOYS = ["pat:DECOY:x", "pat:Z:x", "pat:racket:x", "pat:globXXstar:x",
                  "pat:globXq:x", "pat:backslash:x", "pat:ev:ins:1:x", "pat:x:x"]

ODD_RULES = """\
version: 1
rules:
  - name: odd-values
    table: fault_odd
    delete:
      - "t:{t}"
      - "b:{b}"
      - "j:{j}"
      - "jb:{jb}"
      - "arr:{arr}"
      - "tarr:{tarr}"
      - "n:{n}"
      - "m:{m}"
      - "p:{p}"
      - "d:{d}"
      - "ts:{ts}"
      - "up:{t|upper}"
      - "md5:{big|md5}"
      - "raw:{big}"
      - "{{lit}}:{id}"
  - name: odd-pattern
    table: fault_odd
    delete_pattern: ["pat:{t}:*"]
  - name: toast-default
    table: fault_toast_default
    delete: ["td:{id}", "tdbig:{big|md5}"]
  - name: dropped
    table: fault_drop
    delete: ["drop:{v}"]
  - name: renamed
    table: fault_ren
    delete: ["ren:{v}", "renid:{id}"]
  - name: late
    table: fault_late
    delete: ["late:{v}"]
"""

# The keys walbust must delete for a fault_odd row, computed by PostgreSQL (NULLs skip).
ODD_KEYS_SQL = """
SELECT unnest(ARRAY[
    't:' || t, 'b:' || b::text, 'j:' || j::text, 'jb:' || jb::text, 'arr:' || arr::text,
    'tarr:' || tarr::text, 'n:' || n::text, 'm:' || m::text, 'p:' || p::text,
    'd:' || d::text, 'ts:' || ts::text, 'up:' || upper(t), 'md5:' || md5(big),
    'raw:' || big, '{lit}:' || id::text, 'pat:' || t || ':x'])
FROM fault_odd WHERE id = ANY(%s)
"""


class BadDataTest(FaultCase):
    def schema(self):
        faultlib.event_schema(self.pg)
        self.pg.execute("""
            CREATE TYPE mood AS ENUM ('happy', 'sad', 'so-so ''quoted''');
            CREATE TYPE pair AS (a int, b text);
            CREATE DOMAIN posint AS int CHECK (VALUE > 0);
            CREATE TABLE fault_odd (
                id serial PRIMARY KEY, t text, b bytea, j json, jb jsonb, arr int[],
                tarr text[], n numeric, m mood, p pair, d posint, ts timestamptz,
                big text, touch int NOT NULL DEFAULT 0);
            ALTER TABLE fault_odd REPLICA IDENTITY FULL;
            CREATE TABLE fault_toast_default (id serial PRIMARY KEY, big text,
                touch int NOT NULL DEFAULT 0);
            CREATE TABLE fault_drop (id serial PRIMARY KEY, v text);
            CREATE TABLE fault_ren (id serial PRIMARY KEY, v text);
            ALTER TABLE fault_ren REPLICA IDENTITY FULL;
            CREATE TABLE fault_late (id serial PRIMARY KEY, v text);
            ALTER PUBLICATION walbust ADD TABLE fault_odd, fault_toast_default, fault_drop,
                fault_ren;
        """)

    def setUp(self):
        super().setUp()
        self.odd_rules = f"{self.rules_dir}/odd.yaml"
        with open(self.odd_rules, "w") as f:
            f.write(ODD_RULES)

    def start(self):
        w = self.make_walbust(rules=[self.rules_path, self.odd_rules])
        w.start()
        w.wait_streaming(timeout=30 * SLOW)
        w.sync(timeout=30 * SLOW)
        return w

    def odd_keys(self, ids):
        # (upper() of a database with locale C changes ASCII letters only, as walbust does)
        return {r[0] for r in self.pg.query(ODD_KEYS_SQL, (ids,)) if r[0] is not None}

    def insert_odd_rows(self, rep):
        conn = self.pg.connect()
        ids = []
        with conn.cursor() as cur:
            for i, t in enumerate(ODD_TEXTS):
                cur.execute(
                    "INSERT INTO fault_odd (t, b, j, jb, arr, tarr, n, m, p, d, ts, big)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, ROW(%s, %s), %s, %s, %s)"
                    " RETURNING id",
                    (t, t.encode("utf-8") + bytes([0, 255, i]),
                     '{"k": "%s", "n": [1, 2.50]}' % i, '{"b": 1, "a": [true, null]}',
                     [i, -i, 2 ** 31 - 1], [t, "x,y", "NULL", None], f"{i}.50",
                     ["happy", "sad", "so-so 'quoted'"][i % 3], i, t, i + 1,
                     f"2026-01-0{1 + i % 9} 10:00:00+0{i % 10}",
                     # every fourth row carries a 1 MB value (TOASTed, used in keys)
                     (t + "x" * (1 << 20)) if i % 4 == 0 else f"small {t}"))
                ids.append(cur.fetchone()[0])
            # a row of NULLs: every rendering skips, nothing else happens
            cur.execute("INSERT INTO fault_odd (t) VALUES (NULL) RETURNING id")
            ids.append(cur.fetchone()[0])
        conn.close()
        return ids

    def test_odd_values_and_types(self):
        w = self.start()
        keys_checked = 0
        for rep in range(REPEAT):
            ids = self.insert_odd_rows(rep)
            w.sync(timeout=60 * SLOW)
            # The rows exist now; their keys are cached, then an update that touches
            # only an unused column (the 1 MB values stay unchanged TOAST on the new
            # row: the old row has them) and a delete must clear them.
            keys = self.odd_keys(ids)  # the update changes no column the keys use
            for step, sql in (("update", "UPDATE fault_odd SET touch = touch + 1 WHERE id = ANY(%s)"),
                              ("delete", "DELETE FROM fault_odd WHERE id = ANY(%s)")):
                self.assertGreater(len(keys), 12 * len(ODD_TEXTS))
                self.r.mset({k: "cached" for k in keys})
                self.r.mset({k: "decoy" for k in PATTERN_DECOYS})
                self.pg.execute(sql, (ids,))
                self.sync_acknowledged()
                left = fixtures.existing_keys(self.r, keys)
                self.lost += len(left)
                self.assertEqual(left, set(), f"rep {rep} {step}: keys left:"
                                 f" {sorted(k[:60] for k in left)[:10]}\n{w.log_tail()}")
                self.assertEqual(fixtures.existing_keys(self.r, PATTERN_DECOYS), set(PATTERN_DECOYS),
                                 "a value widened a delete_pattern")
                keys_checked += len(keys)
        self.assertTrue(w.running())
        self.assertEqual(self.unexpected_errors(), [])
        summary("bad-data-values", REPEAT, keys_checked, self.lost)

    def test_unchanged_toast_without_full_identity(self):
        """Skipped, counted, warned once per rule and reason; the rest of the change and
        of the transaction is still invalidated."""
        w = self.start()
        self.pg.execute("INSERT INTO fault_toast_default (big) SELECT repeat(md5(i::text), 40000)"
                        " FROM generate_series(1, 5) i")
        w.sync(timeout=30 * SLOW)
        for rep in range(REPEAT):
            self.r.mset({f"td:{i}": "c" for i in range(1, 6)})
            self.pg.execute("UPDATE fault_toast_default SET touch = touch + 1")
            w.sync(timeout=30 * SLOW)
            self.assertEqual(fixtures.existing_keys(self.r, [f"td:{i}" for i in range(1, 6)]), set())
        failures = faultlib.metric(self.metrics(), "walbust_render_failures_total",
                                   rule="toast-default")
        warns = self.log_records(r" warning rule toast-default")
        log(f"unchanged TOAST: {failures:.0f} render failures counted, {len(warns)} warnings")
        self.assertEqual(failures, 5 * REPEAT)
        self.assertEqual(len(warns), 1, "\n".join(warns))
        self.assertTrue(w.running())

    def test_schema_changes_while_streaming(self):
        w = self.start()
        checked = 0
        # A table dropped right after a change to it: decoding still reads the change
        # with the catalog of its time.
        for rep in range(REPEAT):
            if rep:
                self.pg.execute("CREATE TABLE fault_drop (id serial PRIMARY KEY, v text);"
                                " ALTER PUBLICATION walbust ADD TABLE fault_drop")
            keys = [f"drop:{rep}-{i}" for i in range(50)]
            self.r.mset({k: "c" for k in keys})
            self.pg.execute("INSERT INTO fault_drop (v) SELECT %s || '-' || i"
                            " FROM generate_series(0, 49) i", (str(rep),))
            self.pg.execute("DROP TABLE fault_drop")
            w.sync(timeout=30 * SLOW)
            self.assertEqual(fixtures.existing_keys(self.r, keys), set(), f"drop rep {rep}")
            checked += len(keys)

        # A column renamed: keys of changes before the rename are deleted; afterwards
        # {v} no longer exists (skipped, counted, warned once), {id} still renders.
        self.r.mset({"ren:a": "c", "ren:b": "c", "renid:1": "c", "renid:2": "c"})
        self.pg.execute("INSERT INTO fault_ren (v) VALUES ('a'), ('b')")
        self.pg.execute("ALTER TABLE fault_ren RENAME COLUMN v TO w")
        w.sync(timeout=30 * SLOW)
        self.assertEqual(fixtures.existing_keys(self.r, ["ren:a", "ren:b", "renid:1", "renid:2"]),
                         set())
        checked += 4
        for rep in range(REPEAT):
            self.r.mset({"renid:1": "c", "renid:2": "c"})
            self.pg.execute("UPDATE fault_ren SET w = w || '!'")
            w.sync(timeout=30 * SLOW)
            self.assertEqual(fixtures.existing_keys(self.r, ["renid:1", "renid:2"]), set())
            checked += 2
        warns = self.log_records(r" warning rule renamed")
        self.assertEqual(len(warns), 1, "\n".join(warns))
        self.assertGreaterEqual(faultlib.metric(self.metrics(), "walbust_render_failures_total",
                                                rule="renamed"), 2 * REPEAT)

        # The publication altered while streaming: a table added is followed from then
        # on, a table removed is no longer sent; nothing else is disturbed.
        for rep in range(REPEAT):
            self.pg.execute("ALTER PUBLICATION walbust ADD TABLE fault_late")
            keys = [f"late:{rep}-{i}" for i in range(20)]
            self.r.mset({k: "c" for k in keys})
            self.pg.execute("INSERT INTO fault_late (v) SELECT %s || '-' || i"
                            " FROM generate_series(0, 19) i", (str(rep),))
            w.sync(timeout=30 * SLOW)
            self.assertEqual(fixtures.existing_keys(self.r, keys), set(), f"late rep {rep}")
            checked += len(keys)
            self.pg.execute("ALTER PUBLICATION walbust DROP TABLE fault_late")
            self.pg.execute("INSERT INTO fault_late (v) VALUES ('unpublished')")
            w.sync(timeout=30 * SLOW)
        self.assertTrue(w.running())
        self.assertEqual(self.unexpected_errors(), [])
        # The table left the publication: the rule that reads it cannot match, and says so.
        self.assertTrue(self.late_unbound_errors(), "no error line for the unpublished table")
        summary("bad-data-schema-changes", REPEAT, checked, self.lost)

    LATE_UNBOUND = re.compile(r" error rule late \(.*\) cannot match: table public\.fault_late is not in publication")
    RENAMED_UNBOUND = re.compile(r" error rule renamed \(.*\) cannot match: column v of table public\.fault_ren")
    DROPPED_UNBOUND = re.compile(r" error rule dropped \(.*\) cannot match: table public\.fault_drop does not exist")

    def late_unbound_errors(self):
        return [r for r in self.log_records(r" (error|critical) ") if self.LATE_UNBOUND.search(r)]

    def unexpected_errors(self):
        """Error records other than the unbound rules this file makes on purpose: `late`,
        whose table is out of the publication at start and between the steps that add it,
        `renamed`, whose column is renamed, and `dropped`, whose table is dropped and
        created again (a catalog refresh in between sees it missing). walbust must say so
        for each."""
        return [r for r in self.log_records(r" (error|critical) ")
                if not (self.LATE_UNBOUND.search(r) or self.RENAMED_UNBOUND.search(r)
                        or self.DROPPED_UNBOUND.search(r))]


if __name__ == "__main__":
    unittest.main()
