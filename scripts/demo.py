"""walbust demo: a blog's cache invalidated from PostgreSQL's logical replication.

Run through scripts/demo.sh (which installs dependencies and builds walbust first).
Starts throwaway PostgreSQL 15 and Redis servers, loads a small blog, caches its pages in
Redis, starts `walbust run` with rules/blog.yaml and changes the blog with plain SQL,
showing which cached keys walbust deletes. Exits non-zero if walbust deletes a key it
should keep or keeps one it should delete.
"""

import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
os.environ.setdefault("WALBUST_SOURCE_DIR", ROOT)
os.environ.setdefault("WALBUST_BIN", os.path.join(ROOT, "build", "walbust"))

import fixtures  # noqa: E402
from fixtures import PostgresServer, RedisServer, Walbust  # noqa: E402

TIMEOUT = 15.0
BOLD, DIM, GREEN, RED, RESET = (
    ("\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m") if sys.stdout.isatty()
    else ("", "", "", "", ""))

failures = []


def say(text):
    print(f"\n{BOLD}{text}{RESET}", flush=True)


def blog_keys(pg):
    """Every key the blog pages use for the current rows (what a warm cache holds)."""
    posts = pg.query("SELECT id, author_id FROM blog_post")
    cats = [r[0] for r in pg.query("SELECT id FROM blog_category")]
    return fixtures.blog_all_keys([p for p, _ in posts], cats, {a for _, a in posts})


def key_order(k):
    name, _, num = k.rpartition("_")
    return (name, int(num)) if num.isdigit() else (k, 0)


def fill(r, keys):
    fixtures.fill_keys(r, keys, value="<cached html>")
    r.set("session:alice", "not a cache page")


def show(r, keys, expect_gone):
    """Prints each key's state and records any mismatch with the expectation."""
    present = fixtures.existing_keys(r, keys)
    for k in sorted(keys, key=key_order):
        there = k in present
        want_gone = k in expect_gone
        ok = there != want_gone
        state = "cached " if there else "deleted"
        mark = "" if ok else f"  {RED}<-- expected {'deleted' if want_gone else 'cached'}{RESET}"
        colour = GREEN if not there else ""
        print(f"    {colour}{state}{RESET}  {k}{mark}")
        if not ok:
            failures.append(k)


def step(pg, r, w, title, statement, expect_gone, params=None):
    keys = blog_keys(pg) | {"session:alice"}
    fill(r, keys)
    say(title)
    conn = pg.connect(autocommit=False)
    with conn.cursor() as cur:
        print(f"  {DIM}SQL>{RESET} {statement}", flush=True)
        cur.execute(statement, params)
    end = fixtures.commit_and_get_end_lsn(conn)
    t0 = time.monotonic()
    conn.close()
    keys |= set(expect_gone)
    if expect_gone:
        fixtures.wait_for(lambda: not fixtures.existing_keys(r, expect_gone), TIMEOUT,
                          interval=0.005, message="the expected keys to be deleted",
                          on_timeout=w.log_tail)
        print(f"  the pages were deleted {(time.monotonic() - t0) * 1000:.0f} ms after COMMIT")
    # walbust acknowledges a transaction to PostgreSQL only once Redis confirmed its
    # deletes, so after this the cache state below is final.
    w.wait_confirmed(end, timeout=TIMEOUT)
    print(f"  walbust acknowledged the commit (LSN {end}) to PostgreSQL"
          f" {(time.monotonic() - t0) * 1000:.0f} ms after COMMIT; keys now:")
    show(r, keys, set(expect_gone))


def dry_run(pg, r, w):
    """Shows `walbust dry-run` on the live stream before the daemon deletes anything."""
    keys = blog_keys(pg) | {"session:alice"}
    fill(r, keys)
    say("0. Before trusting the rules: walbust dry-run follows the real replication stream on a"
        " temporary slot and only asks Redis (EXISTS) what a delete would hit")
    print(f"  $ walbust dry-run -c {os.path.basename(w.config_path)} --check-redis --max-changes 1")
    proc = w.popen_cli(["dry-run", "--check-redis", "--max-changes", "1",
                        "--duration", str(int(TIMEOUT))])
    # The temporary slot sees only changes committed after it exists: wait for it.
    banner = proc.stderr.readline()
    if "following changes" not in banner:
        proc.kill()
        raise AssertionError(f"dry-run did not start: {banner}{proc.stderr.read()}")
    statement = "UPDATE blog_post SET category_id = 3 WHERE id = 2"
    print(f"  {DIM}SQL>{RESET} {statement}", flush=True)
    pg.execute(statement)
    out, err = proc.communicate(timeout=TIMEOUT + 10)
    print("  " + out.rstrip().replace("\n", "\n  "))
    if proc.returncode != 0 or "category_posts_3" not in out or "category_posts_2" not in out:
        raise AssertionError(f"dry-run failed (exit {proc.returncode}): {out}{err}")
    # Nothing was deleted: dry-run never writes to Redis.
    gone = keys - fixtures.existing_keys(r, keys)
    print(f"  dry-run deleted nothing: {len(keys) - len(gone)} of {len(keys)} keys still cached")
    if gone:
        failures.extend(sorted(gone))
    pg.execute("UPDATE blog_post SET category_id = 2 WHERE id = 2")


def main():
    binary = fixtures.walbust_binary()
    say("Starting throwaway PostgreSQL 15 and Redis")
    pg = PostgresServer()
    redis = RedisServer()
    r = redis.client()
    print(f"  PostgreSQL on 127.0.0.1:{pg.port} ({pg.tmp}), Redis on 127.0.0.1:{redis.port}")

    fixtures.blog_schema(pg, marker=False)
    conn = pg.connect()
    with conn.cursor() as cur:
        cur.execute("INSERT INTO blog_category (name, slug) VALUES"
                    " ('News', 'news'), ('Tech', 'tech'), ('Travel', 'travel')")
        cur.execute(
            "INSERT INTO blog_post (title, slug, author_id, category_id, view_count) VALUES"
            " ('Hello world', 'hello', 1, 1, 10),"
            " ('Postgres tips', 'pg-tips', 2, 2, 20),"
            " ('A week in Lisbon', 'lisbon', 3, 3, 30),"
            " ('Redis pipelines', 'redis', 2, 2, 40),"
            " ('Release notes', 'release', 1, 1, 50)")
        cur.execute("INSERT INTO blog_comment (post_id, author_name, body) VALUES"
                    " (3, 'bob', 'Lovely!'), (3, 'eve', 'Take me there'), (2, 'al', 'Thanks')")
    conn.close()
    print("  blog: 3 categories (1 News, 2 Tech, 3 Travel), 5 posts by authors 1-3, 3 comments")

    rules = fixtures.blog_rules_path()
    w = Walbust(pg, redis, rules=[rules], marker=False, status_interval="1s", binary=binary,
                config={"log": {"level": "info", "format": "text"}})
    dry_run(pg, r, w)
    say(f"Starting: walbust run -c {w.config_path}  (rules: {os.path.relpath(rules, ROOT)})")
    with open(w.config_path) as f:
        print("  " + f.read().replace("\n", "\n  ").rstrip())
    w.start()
    w.wait_streaming(timeout=TIMEOUT)
    print(f"  streaming from slot 'walbust' (pid {w.pid})")

    step(pg, r, w,
         "1. Move post 1 'Hello world' from News (1) to Tech (2): both category pages go,"
         " Travel (3) stays",
         "UPDATE blog_post SET category_id = 2 WHERE id = 1",
         ["post_detail_1", "home_page_posts", "category_posts_1", "category_posts_2",
          "author_posts_1"])
    step(pg, r, w,
         "2. Delete post 3 'A week in Lisbon' (its comments go with it, ON DELETE CASCADE)",
         "DELETE FROM blog_post WHERE id = 3",
         ["post_detail_3", "home_page_posts", "category_posts_3", "author_posts_3"])
    step(pg, r, w,
         "3. A bulk UPDATE in raw SQL (no ORM signals fire): feature every post of author 2",
         "UPDATE blog_post SET is_featured = true WHERE author_id = 2",
         ["post_detail_2", "post_detail_4", "home_page_posts", "category_posts_2",
          "author_posts_2"])
    step(pg, r, w,
         "4. Count a page view (only view_count changes: the rules ignore it)",
         "UPDATE blog_post SET view_count = view_count + 1 WHERE id = 2",
         [])

    say("walbust's log (lines of interest)")
    code = w.stop(timeout=10)
    lines = [ln for ln in w.log().splitlines() if ln.strip() and not ln.startswith("===")]
    if len(lines) > 40:
        print(f"  ... ({len(lines) - 40} earlier lines in {w.logfile})")
    for line in lines[-40:]:
        print(f"  {line}")
    print(f"  exit status after SIGTERM: {code}")
    if code != 0:
        failures.append(f"exit status {code}")

    w.close()
    redis.close()
    pg.close()
    if failures:
        say(f"{RED}DEMO FAILED{RESET}: unexpected state of {', '.join(map(str, failures))}")
        return 1
    say(f"{GREEN}Demo passed{RESET}: every affected page was deleted, everything else stayed.")
    return 0


if __name__ == "__main__":
    # SIGTERM/SIGHUP exit through atexit, which stops and removes the servers.
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, lambda *_: sys.exit(130))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except (fixtures.ServerError, AssertionError) as e:
        print(f"\n{RED}demo failed:{RESET} {e}", file=sys.stderr)
        sys.exit(1)
