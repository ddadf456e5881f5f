"""How long walbust's catalog read takes, and how soon a schema change is reported.

Creates a partitioned table with N partitions published partition by partition
(publish_via_partition_root = false, the worst case: every partition is a row of the
snapshot), runs walbust with log level debug, and reports the catalog read times it logs
("catalog read and rules bound in X ms (N relations)") and the seconds from
ALTER PUBLICATION ... DROP TABLE to walbust_rule_unbound = 1.

    cd tests/integration && WALBUST_BIN=$PWD/../../build/walbust \\
        /usr/bin/python3 ../bench/catalog_refresh.py [PARTITIONS]
"""

import os
import re
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))

import fixtures  # noqa: E402
from faultlib import metric, scrape  # noqa: E402

RULES = """\
version: 1
rules:
  - {name: ev-pages, table: ev, delete: ["ev_{id}"]}
  - {name: other-pages, table: other, delete: ["other_{id}"]}
"""


def main(partitions):
    with fixtures.PostgresServer() as pg, fixtures.RedisServer() as redis:
        pg.execute("CREATE TABLE ev (id int NOT NULL, part int NOT NULL) PARTITION BY LIST (part)")
        pg.execute("DO $$ BEGIN FOR i IN 1.." + str(partitions) + " LOOP EXECUTE format("
                   "'CREATE TABLE ev_%s PARTITION OF ev FOR VALUES IN (%s)', i, i); END LOOP; END $$")
        pg.execute("CREATE TABLE other (id int PRIMARY KEY)")
        pg.execute(f"CREATE TABLE {fixtures.MARKER_TABLE} (id serial PRIMARY KEY, note text)")
        pg.execute(f"CREATE PUBLICATION walbust FOR TABLE ev, other, {fixtures.MARKER_TABLE}")
        tmp = tempfile.mkdtemp(prefix="walbust-catalog-bench-")
        rules = os.path.join(tmp, "rules.yaml")
        with open(rules, "w") as f:
            f.write(RULES)
        port = fixtures.free_port()
        w = fixtures.Walbust(pg, redis, rules=[rules],
                             config={"metrics": {"listen": f"127.0.0.1:{port}"},
                                     "log": {"level": "debug"}})
        try:
            w.start()
            w.wait_streaming()
            w.sync()
            # Three periodic reads, then the time to notice an unpublished table.
            w.wait_for(lambda: len(re.findall(r"catalog read and rules bound", w.log())) >= 4, 60)
            t0 = time.monotonic()
            pg.execute("ALTER PUBLICATION walbust DROP TABLE other")
            w.wait_for(lambda: metric(scrape(port), "walbust_rule_unbound", rule="other-pages") == 1,
                       30)
            noticed = time.monotonic() - t0
            times = [int(m) for m in re.findall(r"catalog read and rules bound in (\d+) ms", w.log())]
            rel = re.findall(r"\((\d+) relations\)", w.log())[-1]
            print(f"partitions={partitions} relations={rel} catalog_reads={len(times)} "
                  f"median_ms={statistics.median(times)} max_ms={max(times)} "
                  f"unpublished_noticed_after_s={noticed:.1f}")
        finally:
            w.stop()
            w.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
