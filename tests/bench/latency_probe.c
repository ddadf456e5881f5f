/* The latency section's instrument: commits single-row transactions and times when each
 * one's cache key is deleted, from outside the consumer.
 *
 * A writer thread commits `UPDATE blog_post ... WHERE id = N` (autocommit, one prepared
 * statement over libpq) and notes CLOCK_MONOTONIC when each COMMIT returned. A watcher
 * thread is subscribed to Redis keyspace notifications (`__keyevent@0__:del`; UNLINK and DEL
 * both emit it) and notes when the notification for `post_detail_N` reached it. Both clocks
 * are the same, so the difference is the latency a reader of the cache sees, whatever the
 * consumer is.
 *
 * It is C, not Python, because the instrument must be faster than what it measures: a
 * Python subscriber sharing an interpreter lock with the writer was measured adding tens of
 * milliseconds at 10k notifications/s, more than the latency it was meant to see.
 *
 *   latency_probe MODE PG_DSN REDIS_HOST REDIS_PORT RATE DURATION_S FIRST_ID COUNT WAIT_S OUT
 * [SLOT]
 *
 * MODE pg: the writer commits UPDATEs (the consumer deletes post_detail_N).
 * MODE floor: the writer UNLINKs post_detail_N itself (no database, no consumer): what is
 *   left is notification delivery and this program, the measurement's own floor.
 * MODE recv: the writer commits UPDATEs and, instead of watching Redis, this program is the
 *   consumer: it streams SLOT (pgoutput, proto_version 1, publication "bench") and notes
 *   when the Commit of each post's transaction arrived. That is the walsender's own
 *   commit→delivery latency, the floor of any consumer of one slot, as pg_recvlogical is
 *   the floor of its throughput. It acknowledges what it received every second.
 * MODE ideal: the writer commits UPDATEs, a consumer thread streams SLOT like recv and, at
 *   each Commit, UNLINKs the keys rules/blog.yaml renders for the transaction's blog_post
 *   rows (new and old row, deduplicated: post_detail_{id}, home_page_posts,
 *   category_posts_{category_id}, author_posts_{author_id}), one UNLINK per transaction,
 *   pipelined: every Commit already received is appended before one write to Redis, and
 *   while a write is unanswered the next ones wait for its replies (one batch per round
 *   trip, as a good consumer does on busy cores; alone, nothing waits). It
 *   acknowledges a Commit's end LSN once Redis answered its UNLINK (every second). The
 *   watcher times the deletes as in pg mode: the floor of any cache consumer on this machine.
 * RATE: transactions per second on an absolute schedule (a late one is followed by the
 *   next at once); 0 = flat out, as fast as the writer goes.
 * It stops after COUNT transactions or DURATION_S seconds, whichever comes first, then waits
 * up to WAIT_S seconds for the remaining deletes. OUT gets a header line
 * `# transactions N elapsed_s S` (S: how long the writer took), then one line per
 * transaction: `id commit_ns delete_ns` (delete_ns 0: never observed; in recv mode, the time
 * the Commit arrived). In recv and ideal mode the header goes on with the consumer thread's
 * cost: `consumer_cpu_s C consumer_vcsw V consumer_ivcsw I` (getrusage RUSAGE_THREAD:
 * user+sys seconds, voluntary and involuntary context switches). A summary goes to stderr.
 * Exit status: 0, or 1 on any error (a message says which).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define KEY_PREFIX "post_detail_"
#define CHANNEL "__keyevent@0__:del"

static long long first_id, count;
static int64_t *commit_ns, *delete_ns; /* indexed by id - first_id */
static atomic_llong observed;
static atomic_int watcher_stop;
static const char *redis_host;
static int redis_port;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what, const char *detail) {
  fprintf(stderr, "latency_probe: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  exit(1);
}

static redisContext *redis_connect(void) {
  redisContext *c = redisConnect(redis_host, redis_port);
  if (c == NULL || c->err) die("cannot connect to Redis", c ? c->errstr : "out of memory");
  return c;
}

static void redis_ok(redisContext *c, const char *fmt, const char *arg) {
  redisReply *r = redisCommand(c, fmt, arg);
  if (r == NULL) die("Redis command failed", c->errstr);
  if (r->type == REDIS_REPLY_ERROR) die("Redis command failed", r->str);
  freeReplyObject(r);
}

/* Records the first notification of each of our keys. Replies are parsed from the buffer
 * after each read; all replies of one read get the time that read returned, which is when
 * they reached this process. */
static void *watch(void *ready_flag) {
  redisContext *c = redis_connect();
  if (redisAppendCommand(c, "SUBSCRIBE " CHANNEL) != REDIS_OK) die("cannot subscribe", c->errstr);
  int done = 0;
  while (!done) {
    if (redisBufferWrite(c, &done) != REDIS_OK) die("cannot subscribe", c->errstr);
  }
  int subscribed = 0;
  int64_t t = 0;
  const size_t prefix_len = strlen(KEY_PREFIX);
  for (;;) {
    void *raw = NULL;
    if (redisGetReplyFromReader(c, &raw) != REDIS_OK) die("bad reply from Redis", c->errstr);
    if (raw == NULL) {
      if (atomic_load(&watcher_stop)) break;
      struct pollfd p = {.fd = c->fd, .events = POLLIN};
      int n = poll(&p, 1, 50);
      if (n < 0 && errno != EINTR) die("poll failed", strerror(errno));
      if (n > 0) {
        if (redisBufferRead(c) != REDIS_OK) die("lost the subscriber connection", c->errstr);
        t = now_ns();
      }
      continue;
    }
    redisReply *r = raw;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
        r->element[0]->type == REDIS_REPLY_STRING) {
      if (strcmp(r->element[0]->str, "subscribe") == 0 && !subscribed) {
        subscribed = 1;
        atomic_store((atomic_int *)ready_flag, 1);
      } else if (strcmp(r->element[0]->str, "message") == 0 &&
                 r->element[2]->type == REDIS_REPLY_STRING) {
        const redisReply *key = r->element[2];
        if (key->len > prefix_len && memcmp(key->str, KEY_PREFIX, prefix_len) == 0) {
          long long id = strtoll(key->str + prefix_len, NULL, 10);
          long long i = id - first_id;
          if (i >= 0 && i < count && delete_ns[i] == 0) {
            delete_ns[i] = t;
            atomic_fetch_add(&observed, 1);
          }
        }
      }
    }
    freeReplyObject(r);
  }
  redisFree(c);
  return NULL;
}

/* ---- recv mode: a consumer that does nothing but note when each Commit arrived ---- */

static const char *pg_dsn, *slot_name;
static char run_tag[48]; /* prefix of every title this run writes */
/* recv: acknowledges what it received every second, as walbust does with the benchmark's
 * status_interval (and whenever the server asks), so both move the slot alike. */
static const int64_t status_ns = 1000000000LL;

static uint64_t get_be(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

static void put_be64(char *p, uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = (char)(v & 0xff);
    v >>= 8;
  }
}

/* Column `col` (0-based) of a pgoutput TupleData as text into out (NUL-terminated);
 * false when missing, not text, too long or malformed. */
static int tuple_text(const unsigned char *p, const unsigned char *end, int col, char *out,
                      size_t size) {
  if (end - p < 2) return 0;
  const uint64_t n = get_be(p, 2);
  p += 2;
  for (uint64_t i = 0; i < n && p < end; ++i) {
    const unsigned char kind = *p++;
    uint64_t len = 0;
    if (kind == 't' || kind == 'b') {
      if (end - p < 4) return 0;
      len = get_be(p, 4);
      p += 4;
      if ((uint64_t)(end - p) < len) return 0;
    }
    if ((int)i == col) {
      if (kind != 't' || len >= size) return 0;
      memcpy(out, p, len);
      out[len] = 0;
      return 1;
    }
    p += len;
  }
  return 0;
}

/* Skips one TupleData; NULL when malformed. */
static const unsigned char *skip_tuple(const unsigned char *p, const unsigned char *end) {
  if (end - p < 2) return NULL;
  uint64_t n = get_be(p, 2);
  p += 2;
  for (uint64_t i = 0; i < n; ++i) {
    if (p >= end) return NULL;
    const unsigned char kind = *p++;
    if (kind == 't' || kind == 'b') {
      if (end - p < 4) return NULL;
      const uint64_t len = get_be(p, 4);
      p += 4;
      if ((uint64_t)(end - p) < len) return NULL;
      p += len;
    }
  }
  return p;
}

/* Standby status update: `written` received, `flushed` (and applied) done with. */
static void send_status(PGconn *c, uint64_t written, uint64_t flushed) {
  char msg[34];
  msg[0] = 'r';
  put_be64(msg + 1, written);
  put_be64(msg + 9, flushed);
  put_be64(msg + 17, flushed);
  put_be64(msg + 25, 0);
  msg[33] = 0;
  if (PQputCopyData(c, msg, sizeof msg) != 1 || PQflush(c) != 0)
    die("cannot send a status update", PQerrorMessage(c));
}

static PGconn *start_replication(void) {
  char dsn[1024];
  snprintf(dsn, sizeof dsn, "%s replication=database", pg_dsn);
  PGconn *c = PQconnectdb(dsn);
  if (PQstatus(c) != CONNECTION_OK) die("cannot open a replication connection", PQerrorMessage(c));
  char start[512];
  snprintf(
      start, sizeof start,
      "START_REPLICATION SLOT \"%s\" LOGICAL 0/0 (proto_version '1', publication_names 'bench')",
      slot_name);
  PGresult *res = PQexec(c, start);
  if (PQresultStatus(res) != PGRES_COPY_BOTH) die("cannot start replication", PQerrorMessage(c));
  PQclear(res);
  return c;
}

/* The consumer thread's own cost, for the output header (recv and ideal modes). */
static double consumer_cpu_s = -1;
static long consumer_vcsw = -1, consumer_ivcsw = -1;

static void note_consumer_cost(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_THREAD, &ru) != 0) die("getrusage failed", strerror(errno));
  consumer_cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                   (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
  consumer_vcsw = ru.ru_nvcsw;
  consumer_ivcsw = ru.ru_nivcsw;
}

static void *receive(void *ready_flag) {
  PGconn *c = start_replication();
  atomic_store((atomic_int *)ready_flag, 1);
  long long pending = -1; /* the post updated by the transaction being received */
  uint64_t received = 0;
  int64_t t = now_ns();
  int64_t next_status = t + status_ns;
  for (;;) {
    char *buf = NULL;
    const int n = PQgetCopyData(c, &buf, 1);
    if (now_ns() >= next_status) {
      send_status(c, received, received);
      next_status = now_ns() + status_ns;
    }
    if (n == 0) {
      if (atomic_load(&watcher_stop)) break;
      struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
      int r = poll(&p, 1, 50);
      if (r < 0 && errno != EINTR) die("poll failed", strerror(errno));
      if (r > 0) {
        if (!PQconsumeInput(c)) die("lost the replication connection", PQerrorMessage(c));
        t = now_ns();
      }
      continue;
    }
    if (n < 0) die("the replication stream ended", PQerrorMessage(c));
    const unsigned char *m = (const unsigned char *)buf, *end = m + n;
    if (m[0] == 'w' && n > 25) {
      const uint64_t data_start = get_be(m + 1, 8);
      const unsigned char *p = m + 25;
      if (*p == 'U' && end - p > 6) {
        p += 5; /* 'U', relation id */
        if (*p == 'K' || *p == 'O') p = skip_tuple(p + 1, end);
        /* Ours only: a post whose new title carries this run's tag (an earlier run may
         * have updated the same post, and a restarted stream may send it again). */
        char id[32], title[96];
        if (p && p < end && *p == 'N' && tuple_text(p + 1, end, 0, id, sizeof id) &&
            tuple_text(p + 1, end, 1, title, sizeof title) &&
            strncmp(title, run_tag, strlen(run_tag)) == 0) {
          pending = atoll(id);
        }
      } else if (*p == 'C') {
        const long long i = pending - first_id;
        if (pending >= 0 && i >= 0 && i < count && delete_ns[i] == 0) {
          delete_ns[i] = t;
          atomic_fetch_add(&observed, 1);
        }
        pending = -1;
      }
      if (data_start > received) received = data_start;
    } else if (m[0] == 'k' && n >= 18) {
      const uint64_t wal_end = get_be(m + 1, 8);
      if (wal_end > received) received = wal_end;
      if (m[17]) send_status(c, received, received);
    }
    PQfreemem(buf);
  }
  send_status(c, received, received);
  PQfinish(c);
  note_consumer_cost();
  return NULL;
}

/* ---- ideal mode: the least any cache consumer of the slot must do ---- */

#define KEY_SIZE 64
#define MAX_INFLIGHT 65536 /* UNLINKs sent and not yet answered; a power of two */

static uint64_t post_relid = UINT64_MAX; /* blog_post, from its Relation message */
static char (*txn_keys)[KEY_SIZE];       /* the keys of the transaction being received */
static const char **unlink_argv;
static size_t *unlink_lens;
static size_t txn_nkeys, txn_cap;
static uint64_t inflight_lsn[MAX_INFLIGHT]; /* end LSN of each unanswered UNLINK, in order */
static uint64_t inflight_sent, inflight_answered, confirmed_lsn;
static uint64_t inflight_written; /* inflight_sent when Redis last got all of them */
static int partial_write;         /* a write to Redis is under way */

/* A key of the transaction, once however many rows and row images render it. Linear:
 * the latency workload's transactions change one row. */
static void add_key(const char *prefix, const char *value) {
  char key[KEY_SIZE];
  snprintf(key, sizeof key, "%s%s", prefix, value);
  for (size_t i = 0; i < txn_nkeys; ++i)
    if (strcmp(txn_keys[i], key) == 0) return;
  if (txn_nkeys == txn_cap) {
    txn_cap = txn_cap ? 2 * txn_cap : 16;
    txn_keys = realloc(txn_keys, txn_cap * sizeof *txn_keys);
    unlink_argv = realloc(unlink_argv, (txn_cap + 1) * sizeof *unlink_argv);
    unlink_lens = realloc(unlink_lens, (txn_cap + 1) * sizeof *unlink_lens);
    if (!txn_keys || !unlink_argv || !unlink_lens) die("out of memory", NULL);
  }
  memcpy(txn_keys[txn_nkeys++], key, sizeof key);
}

/* rules/blog.yaml's post-pages templates for one row image of blog_post (columns: id 0,
 * author_id 4, category_id 5). */
static void render_post_keys(const unsigned char *tuple, const unsigned char *end) {
  char id[32], author[32], category[32];
  if (!tuple_text(tuple, end, 0, id, sizeof id) ||
      !tuple_text(tuple, end, 4, author, sizeof author) ||
      !tuple_text(tuple, end, 5, category, sizeof category))
    die("a blog_post row image without id, author_id or category_id", NULL);
  add_key("post_detail_", id);
  add_key("home_page_posts", "");
  add_key("category_posts_", category);
  add_key("author_posts_", author);
}

/* Relation, Insert, Update, Delete: keys for blog_post's full row images ('O' old, 'N' new). */
static void consume_change(const unsigned char *p, const unsigned char *end) {
  const unsigned char kind = *p++;
  if (end - p < 5) return;
  const uint64_t relid = get_be(p, 4);
  p += 4;
  if (kind == 'R') {
    const unsigned char *nsp_end = memchr(p, 0, (size_t)(end - p));
    if (nsp_end && end - nsp_end > 10 && memcmp(nsp_end + 1, "blog_post", 10) == 0)
      post_relid = relid;
    return;
  }
  if ((kind != 'I' && kind != 'U' && kind != 'D') || relid != post_relid) return;
  while (p && p < end) {
    const unsigned char image = *p++;
    if (image == 'O' || image == 'N') render_post_keys(p, end);
    p = skip_tuple(p, end);
  }
}

static void take_reply(redisReply *r) {
  if (r->type == REDIS_REPLY_ERROR) die("UNLINK failed", r->str);
  freeReplyObject(r);
  confirmed_lsn = inflight_lsn[inflight_answered++ % MAX_INFLIGHT];
}

/* Every reply already read from the socket; blocking for one when `wait`. */
static void take_replies(redisContext *rc, int wait) {
  void *r = NULL;
  if (wait) {
    if (redisGetReply(rc, &r) != REDIS_OK) die("lost the Redis connection", rc->errstr);
    take_reply(r);
  }
  for (;;) {
    if (redisGetReplyFromReader(rc, &r) != REDIS_OK) die("bad reply from Redis", rc->errstr);
    if (r == NULL) return;
    take_reply(r);
  }
}

/* At a Commit: one UNLINK of the transaction's keys, appended, sent with the next write. */
static void queue_unlink(redisContext *rc, uint64_t end_lsn) {
  if (txn_nkeys == 0) {
    if (inflight_sent == inflight_answered) confirmed_lsn = end_lsn;
    return;
  }
  while (inflight_sent - inflight_answered == MAX_INFLIGHT) take_replies(rc, 1);
  unlink_argv[0] = "UNLINK";
  unlink_lens[0] = 6;
  for (size_t i = 0; i < txn_nkeys; ++i) {
    unlink_argv[i + 1] = txn_keys[i];
    unlink_lens[i + 1] = strlen(txn_keys[i]);
  }
  if (redisAppendCommandArgv(rc, (int)txn_nkeys + 1, unlink_argv, unlink_lens) != REDIS_OK)
    die("cannot queue an UNLINK", rc->errstr);
  inflight_lsn[inflight_sent++ % MAX_INFLIGHT] = end_lsn;
  txn_nkeys = 0;
}

static void consume_message(PGconn *c, redisContext *rc, const unsigned char *m, int n,
                            uint64_t *received) {
  const unsigned char *end = m + n;
  if (m[0] == 'w' && n > 25) {
    const uint64_t data_start = get_be(m + 1, 8);
    const unsigned char *p = m + 25;
    /* Commit: 'C', flags, commit LSN, end LSN, timestamp. */
    if (*p == 'C' && end - p >= 26) {
      queue_unlink(rc, get_be(p + 10, 8));
    } else {
      consume_change(p, end);
    }
    if (data_start > *received) *received = data_start;
  } else if (m[0] == 'k' && n >= 18) {
    const uint64_t wal_end = get_be(m + 1, 8);
    if (wal_end > *received) *received = wal_end;
    if (m[17]) send_status(c, *received, confirmed_lsn);
  }
}

/* Waits for the replication stream or Redis, then reads what arrived. */
static void wait_for_input(PGconn *c, redisContext *rc, int writing) {
  struct pollfd p[2] = {{.fd = PQsocket(c), .events = POLLIN},
                        {.fd = rc->fd, .events = POLLIN | (writing ? POLLOUT : 0)}};
  const int r = poll(p, 2, 50);
  if (r < 0 && errno != EINTR) die("poll failed", strerror(errno));
  if (r <= 0) return;
  if (p[0].revents && !PQconsumeInput(c)) die("lost the replication connection", PQerrorMessage(c));
  if (p[1].revents & (POLLIN | POLLERR | POLLHUP)) {
    if (redisBufferRead(rc) != REDIS_OK) die("lost the Redis connection", rc->errstr);
    take_replies(rc, 0);
  }
}

static void *consume(void *ready_flag) {
  PGconn *c = start_replication();
  redisContext *rc = redis_connect();
  atomic_store((atomic_int *)ready_flag, 1);
  uint64_t received = 0;
  int64_t next_status = now_ns() + status_ns;
  for (;;) {
    char *buf = NULL;
    const int n = PQgetCopyData(c, &buf, 1);
    if (now_ns() >= next_status) {
      send_status(c, received, confirmed_lsn);
      next_status = now_ns() + status_ns;
    }
    if (n < 0) die("the replication stream ended", PQerrorMessage(c));
    if (n > 0) {
      consume_message(c, rc, (const unsigned char *)buf, n, &received);
      PQfreemem(buf);
      continue;
    }
    /* Nothing more has arrived: the UNLINKs of every Commit read so far go in one write,
     * unless an earlier write is still unanswered; then they go with its replies, so a
     * busy Redis gets one batch per round trip instead of a write per transaction. */
    int written = 1;
    if (partial_write || inflight_answered >= inflight_written) {
      const uint64_t appended = inflight_sent;
      if (redisBufferWrite(rc, &written) != REDIS_OK) die("lost the Redis connection", rc->errstr);
      partial_write = !written;
      if (written) inflight_written = appended;
    }
    if (atomic_load(&watcher_stop)) break;
    wait_for_input(c, rc, !written);
  }
  send_status(c, received, confirmed_lsn);
  PQfinish(c);
  redisFree(rc);
  note_consumer_cost();
  return NULL;
}

static void sleep_until(int64_t t) {
  /* Behind schedule: go on at once, without even a syscall. */
  if (now_ns() >= t) return;
  struct timespec ts = {.tv_sec = t / 1000000000LL, .tv_nsec = t % 1000000000LL};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

/* The keys the floor's writer will delete exist first, so every UNLINK notifies. */
static void prefill_floor_keys(redisContext *cmd) {
  char key[64];
  for (long long i = 0; i < count; ++i) {
    snprintf(key, sizeof key, KEY_PREFIX "%lld", first_id + i);
    redisAppendCommand(cmd, "SET %s x", key);
  }
  for (long long i = 0; i < count; ++i) {
    void *r;
    if (redisGetReply(cmd, &r) != REDIS_OK) die("cannot prefill Redis", cmd->errstr);
    freeReplyObject(r);
  }
}

/* The writer's connection, with its UPDATE prepared. */
static PGconn *prepare_writer(void) {
  PGconn *pg = PQconnectdb(pg_dsn);
  if (PQstatus(pg) != CONNECTION_OK) die("cannot connect to PostgreSQL", PQerrorMessage(pg));
  PGresult *res = PQprepare(
      pg, "touch", "UPDATE blog_post SET title = $1, updated_at = now() WHERE id = $2", 2, NULL);
  if (PQresultStatus(res) != PGRES_COMMAND_OK) die("cannot prepare the UPDATE", PQerrorMessage(pg));
  PQclear(res);
  return pg;
}

static void write_output(const char *path, long long written, double elapsed) {
  FILE *out = fopen(path, "w");
  if (!out) die("cannot write the output file", strerror(errno));
  fprintf(out, "# transactions %lld elapsed_s %.6f", written, elapsed);
  if (consumer_vcsw >= 0) {
    fprintf(out, " consumer_cpu_s %.6f consumer_vcsw %ld consumer_ivcsw %ld", consumer_cpu_s,
            consumer_vcsw, consumer_ivcsw);
  }
  fputc('\n', out);
  for (long long i = 0; i < written; ++i) {
    fprintf(out, "%lld %lld %lld\n", first_id + i, (long long)commit_ns[i],
            (long long)delete_ns[i]);
  }
  if (fclose(out) != 0) die("cannot write the output file", strerror(errno));
}

/* Commits (or, for the floor, UNLINKs) one post per transaction at `rate` per second (0: flat
 * out, for `duration` seconds); notes when each returned. Returns how many it wrote. */
static long long run_writer(PGconn *pg, redisContext *cmd, double rate, double duration,
                            double *elapsed) {
  const int64_t t0 = now_ns();
  const int64_t stop_at = t0 + (int64_t)(duration * 1e9);
  long long written = 0;
  char id_text[32], title[96], key[64];
  for (; written < count; ++written) {
    if (rate > 0) {
      sleep_until(t0 + (int64_t)((double)written * 1e9 / rate));
    } else if (now_ns() >= stop_at) {
      break;
    }
    const long long id = first_id + written;
    if (!pg) {
      snprintf(key, sizeof key, KEY_PREFIX "%lld", id);
      redisReply *r = redisCommand(cmd, "UNLINK %s", key);
      if (r == NULL) die("UNLINK failed", cmd->errstr);
      freeReplyObject(r);
    } else {
      snprintf(id_text, sizeof id_text, "%lld", id);
      snprintf(title, sizeof title, "%s%lld", run_tag, written);
      const char *params[2] = {title, id_text};
      PGresult *res = PQexecPrepared(pg, "touch", 2, params, NULL, NULL, 0);
      if (PQresultStatus(res) != PGRES_COMMAND_OK) die("UPDATE failed", PQerrorMessage(pg));
      PQclear(res);
    }
    commit_ns[written] = now_ns();
  }
  *elapsed = (double)(now_ns() - t0) / 1e9;
  return written;
}

/* Starts a watcher or consumer thread and waits until it is connected. */
static void start_thread(pthread_t *thread, void *(*run)(void *)) {
  atomic_int ready = 0;
  if (pthread_create(thread, NULL, run, &ready) != 0) die("cannot start a thread", NULL);
  while (!atomic_load(&ready)) sleep_until(now_ns() + 1000000);
}

int main(int argc, char **argv) {
  if (argc != 11 && argc != 12) {
    fprintf(stderr,
            "usage: latency_probe pg|floor|recv|ideal PG_DSN REDIS_HOST REDIS_PORT RATE DURATION_S "
            "FIRST_ID COUNT WAIT_S OUT "
            "[SLOT]\n");
    return 2;
  }
  const int floor_mode = strcmp(argv[1], "floor") == 0;
  const int recv_mode = strcmp(argv[1], "recv") == 0;
  const int ideal_mode = strcmp(argv[1], "ideal") == 0;
  if (!floor_mode && !recv_mode && !ideal_mode && strcmp(argv[1], "pg") != 0)
    die("MODE must be pg, floor, recv or ideal", argv[1]);
  if ((recv_mode || ideal_mode) && argc != 12) die("recv and ideal need a SLOT", NULL);
  pg_dsn = argv[2];
  snprintf(run_tag, sizeof run_tag, "lat-%d-%lld-", (int)getpid(), (long long)now_ns());
  slot_name = argc == 12 ? argv[11] : NULL;
  redis_host = argv[3];
  redis_port = atoi(argv[4]);
  const double rate = atof(argv[5]);
  const double duration = atof(argv[6]);
  first_id = atoll(argv[7]);
  count = atoll(argv[8]);
  const double wait_s = atof(argv[9]);
  if (count <= 0) die("COUNT must be positive", argv[8]);
  commit_ns = calloc((size_t)count, sizeof *commit_ns);
  delete_ns = calloc((size_t)count, sizeof *delete_ns);
  if (!commit_ns || !delete_ns) die("out of memory", NULL);

  redisContext *cmd = recv_mode ? NULL : redis_connect();
  if (cmd) redis_ok(cmd, "CONFIG SET notify-keyspace-events %s", "Eg");
  PGconn *pg = NULL;
  if (floor_mode) {
    prefill_floor_keys(cmd);
  } else {
    pg = prepare_writer();
  }

  /* Precise pacing: the default 50 us timer slack is half the interval at 10k/s. */
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  pthread_t watcher, consumer;
  start_thread(&watcher, recv_mode ? receive : watch);
  if (ideal_mode) start_thread(&consumer, consume);

  double elapsed = 0;
  const long long written = run_writer(pg, cmd, rate, duration, &elapsed);

  const int64_t give_up = now_ns() + (int64_t)(wait_s * 1e9);
  while (atomic_load(&observed) < written && now_ns() < give_up) sleep_until(now_ns() + 5000000);
  atomic_store(&watcher_stop, 1);
  pthread_join(watcher, NULL);
  if (ideal_mode) pthread_join(consumer, NULL);
  /* Notifications cost Redis CPU on every delete even without subscribers: off again. */
  if (cmd) {
    redis_ok(cmd, "CONFIG SET notify-keyspace-events %s", "");
    redisFree(cmd);
  }
  if (pg) PQfinish(pg);

  write_output(argv[10], written, elapsed);
  fprintf(stderr, "latency_probe: %lld transactions in %.2f s (%.0f/s), %lld deletes observed\n",
          written, elapsed, elapsed > 0 ? (double)written / elapsed : 0.0,
          (long long)atomic_load(&observed));
  return 0;
}
