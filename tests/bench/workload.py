"""Schema, data and Redis contents the benchmark works on (the blog example of rules/blog.yaml)."""

import psycopg2

SCHEMA = """
CREATE TABLE blog_category (id int PRIMARY KEY, name text NOT NULL, slug text NOT NULL);
CREATE TABLE blog_post (
    id          bigint PRIMARY KEY,
    title       text NOT NULL,
    slug        text NOT NULL,
    content     text NOT NULL,
    author_id   int NOT NULL,
    category_id int NOT NULL,
    is_featured boolean NOT NULL DEFAULT false,
    view_count  int NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE blog_comment (id bigserial PRIMARY KEY, post_id bigint NOT NULL, author_name text NOT NULL,
                           body text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
-- The rules render keys from the previous row too, which needs the whole old row.
ALTER TABLE blog_post REPLICA IDENTITY FULL;
ALTER TABLE blog_comment REPLICA IDENTITY FULL;
ALTER TABLE blog_category REPLICA IDENTITY FULL;
CREATE PUBLICATION bench FOR TABLE blog_post, blog_comment, blog_category;

-- Many small transactions from inside the server: one COMMIT per row change, without a
-- client round trip each, so building the backlog takes seconds, not minutes.
CREATE PROCEDURE small_transactions(n int, table_rows bigint, tag text) LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1..n LOOP
    UPDATE blog_post SET title = tag || ' ' || i, updated_at = now()
     WHERE id = 1 + (i::bigint * 7919) % table_rows;
    COMMIT;
  END LOOP;
END $$;
"""

AUTHORS = 500
CATEGORIES = 50
DATABASE = "bench"
PUBLICATION = "bench"
# Keys one blog_post update renders with rules/blog.yaml: post_detail_{id}, home_page_posts,
# category_posts_{category_id} and author_posts_{author_id}, the same for both row images
# because the benchmark's updates never move a post.
KEYS_PER_CHANGE = 4


def connect(dsn):
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


def create_database(pg):
    """Creates the benchmark's database in pg (a fixtures.PostgresServer); returns a
    superuser connection to it."""
    pg.execute(f"CREATE DATABASE {DATABASE}", user="postgres", dbname="postgres")
    conn = connect(pg.conninfo("postgres", DATABASE))
    cur = conn.cursor()
    cur.execute(SCHEMA)
    cur.execute("INSERT INTO blog_category SELECT g, 'Category ' || g, 'category-' || g "
                f"FROM generate_series(0, {CATEGORIES - 1}) g")
    return conn


def add_posts(conn, first, last):
    """Inserts posts first..last; rows are narrow (about 150 bytes), as cache-worthy rows are."""
    conn.cursor().execute(
        "INSERT INTO blog_post (id, title, slug, content, author_id, category_id, is_featured, view_count) "
        "SELECT g, 'Post ' || g, 'post-' || g, repeat('lorem ipsum ', 8), "
        f"g %% {AUTHORS}, g %% {CATEGORIES}, g %% 10 = 0, 0 "
        "FROM generate_series(%s, %s) g", (first, last))
    conn.cursor().execute("VACUUM ANALYZE blog_post")


def update_all(conn, tag):
    """One transaction changing every post (one row change each)."""
    cur = conn.cursor()
    cur.execute("UPDATE blog_post SET title = %s || ' ' || id, updated_at = now()", (tag,))
    return cur.rowcount


def small_transactions(conn, n, table_rows, tag):
    conn.cursor().execute("CALL small_transactions(%s, %s, %s)", (n, table_rows, tag))


def current_lsn(conn):
    cur = conn.cursor()
    cur.execute("SELECT pg_current_wal_lsn()::text")
    return cur.fetchone()[0]


def create_slot(conn, name):
    cur = conn.cursor()
    cur.execute("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')", (name,))
    return cur.fetchone()[0]


def copy_slot(conn, source, name):
    conn.cursor().execute("SELECT pg_copy_logical_replication_slot(%s, %s)", (source, name))


def drop_slot(conn, name):
    conn.cursor().execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                          "WHERE slot_name = %s", (name,))


def acknowledged(conn, name, lsn):
    """Whether the slot's confirmed_flush_lsn reached lsn."""
    cur = conn.cursor()
    cur.execute("SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
                (lsn, name))
    row = cur.fetchone()
    return bool(row and row[0])


def prefill_redis(r, post_ids, base_keys=True):
    """Stores a cached value under every key the blog rules can delete for these posts.

    UNLINK of a missing key is cheaper than of a present one, and keyspace notifications
    fire only for keys that existed, so the deletes must find real keys.
    """
    value = b"x" * 64  # a small cached fragment
    pipe = r.pipeline(transaction=False)
    chunk = {}
    for i in post_ids:
        chunk[f"post_detail_{i}"] = value
        if len(chunk) >= 2000:
            pipe.mset(chunk)
            chunk = {}
    if base_keys:
        chunk["home_page_posts"] = value
        for c in range(CATEGORIES):
            chunk[f"category_posts_{c}"] = value
        for a in range(AUTHORS):
            chunk[f"author_posts_{a}"] = value
    if chunk:
        pipe.mset(chunk)
    pipe.execute()


def scaled_rules(multiplier):
    """A rules file like rules/blog.yaml whose post rule deletes `multiplier` times more keys.

    Every template keeps its family (per post, per category, per author, global) so the mix
    of distinct and repeated keys stays that of the blog rules.
    """
    lines = ["version: 1", "rules:", "  - name: post-pages", "    table: blog_post",
             "    ignore_changes: [view_count]", "    delete:"]
    for j in range(multiplier):
        suffix = f":v{j}" if j else ""
        for t in ("post_detail_{id}", "home_page_posts", "category_posts_{category_id}",
                  "author_posts_{author_id}"):
            lines.append(f'      - "{t}{suffix}"')
    return "\n".join(lines) + "\n"
