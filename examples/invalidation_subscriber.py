#!/usr/bin/python3
"""Keeps a process-local cache coherent with walbust's invalidation events.

An application process often keeps a second cache in its own memory (Django's
LocMemCache, functools.lru_cache, a dict) in front of Redis. walbust deletes keys in
Redis; with `publish:` in a rule it also sends, per transaction, the keys it
invalidated, so each process can drop its own copies:

    PUBLISH cache-invalidation '{"lsn":"0/1A2B3C8","xid":745,"keys":["post_detail_7"]}'
    XADD walbust:invalidations MAXLEN ~ 100000 * lsn 0/1A2B3C8 xid 745 keys '["post_detail_7"]'

A large transaction comes in parts ("part": 1, 2, ... and "last": true on the final
one); every part can be applied on its own. After a crash walbust repeats events it had
not been able to acknowledge: they carry the same lsn, and dropping a key twice is
harmless, so a consumer may simply apply them again (this one skips what it has seen).

Delivery differs by kind (README, "In-process caches"):
- a channel is fire-and-forget: while this process is not subscribed it misses events,
  so it empties its cache whenever it (re)subscribes;
- a stream keeps events: this process resumes after the last entry it applied, and
  empties its cache only if the stream was trimmed past that entry.

Usage as a library:

    cache = LocalCache()
    listener = InvalidationListener(redis.Redis(), cache, channel="cache-invalidation")
    listener.start()
    ...
    value = cache.get_or_set("post_detail_7", lambda: render_post(7))

or on the command line, to watch the events:

    examples/invalidation_subscriber.py --url redis://127.0.0.1:6379/0 --channel cache-invalidation

Needs redis-py (Debian: python3-redis).
"""

import argparse
import fnmatch
import json
import sys
import threading
import time

import redis


def lsn_value(text):
    """'0/1A2B3C8' -> an integer that orders like the LSN."""
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


class LocalCache:
    """A dict cache safe to share between request threads and the listener."""

    def __init__(self):
        self._data = {}
        self._lock = threading.Lock()

    def get(self, key, default=None):
        with self._lock:
            return self._data.get(key, default)

    def set(self, key, value):
        with self._lock:
            self._data[key] = value

    def get_or_set(self, key, compute):
        value = self.get(key)
        if value is None:
            value = compute()
            self.set(key, value)
        return value

    def keys(self):
        with self._lock:
            return set(self._data)

    def invalidate(self, keys, patterns=()):
        with self._lock:
            for key in keys:
                self._data.pop(key, None)
            # TRUNCATE: no rows, so templated keys come as globs over the final keys.
            for pattern in patterns:
                for key in [k for k in self._data if fnmatch.fnmatchcase(k, pattern)]:
                    del self._data[key]

    def clear(self):
        with self._lock:
            self._data.clear()


class InvalidationListener(threading.Thread):
    """Applies walbust's events for one channel or one stream to a LocalCache."""

    def __init__(self, client, cache, channel=None, stream=None, on_event=None,
                 block_ms=1000):
        super().__init__(daemon=True)
        if (channel is None) == (stream is None):
            raise ValueError("give exactly one of channel and stream")
        self.client = client
        self.cache = cache
        self.channel = channel
        self.stream = stream
        self.on_event = on_event  # called with each applied event (a dict), for logging
        self.block_ms = block_ms
        self.last_seen = (-1, -1)  # (lsn, part) of the newest event applied
        self.last_id = None  # stream: the id of the last entry read
        self.ready = threading.Event()  # subscribed (channel) or positioned (stream)
        self._stop = threading.Event()

    def stop(self):
        self._stop.set()

    def apply(self, event):
        """Drops the event's keys unless it repeats one already applied."""
        position = (lsn_value(event["lsn"]), event.get("part", 0))
        if position <= self.last_seen:
            return False  # a repeat after walbust restarted: already applied
        self.cache.invalidate(event["keys"], event.get("patterns", ()))
        self.last_seen = position
        if self.on_event is not None:
            self.on_event(event)
        return True

    def run(self):
        while not self._stop.is_set():
            try:
                if self.channel is not None:
                    self._listen_channel()
                else:
                    self._read_stream()
            except redis.ConnectionError:
                self.ready.clear()
                time.sleep(0.5)  # Redis restarting: reconnect, and start from a clear cache

    def _listen_channel(self):
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self.channel)
            # Events published while we were not subscribed are lost: nothing cached
            # before this point can be trusted.
            self.cache.clear()
            self.ready.set()
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=self.block_ms / 1000)
                if message is not None and message["type"] == "message":
                    self.apply(json.loads(message["data"]))
        finally:
            pubsub.close()

    def _read_stream(self):
        if self.last_id is None:
            # First start: the cache is empty, so only events from now on matter.
            self.cache.clear()
            self.last_id = self._newest_id()
        elif self._trimmed_past(self.last_id):
            # MAXLEN trimmed entries we never read: we cannot know what they held.
            self.cache.clear()
            self.last_id = self._newest_id()
        self.ready.set()
        while not self._stop.is_set():
            reply = self.client.xread({self.stream: self.last_id}, count=100, block=self.block_ms)
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    self.last_id = entry_id
                    event = {"lsn": _text(fields[b"lsn"]), "xid": int(fields[b"xid"]),
                             "keys": json.loads(fields[b"keys"])}
                    if b"part" in fields:
                        event["part"] = int(fields[b"part"])
                        event["last"] = fields[b"last"] == b"1"
                    if b"patterns" in fields:
                        event["patterns"] = json.loads(fields[b"patterns"])
                    self.apply(event)

    def _newest_id(self):
        last = self.client.xrevrange(self.stream, count=1)
        return last[0][0] if last else b"0-0"

    def _trimmed_past(self, entry_id):
        first = self.client.xrange(self.stream, count=1)
        return bool(first) and _id_tuple(first[0][0]) > _id_tuple(entry_id) and \
            entry_id != b"0-0"


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _id_tuple(entry_id):
    ms, seq = _text(entry_id).split("-")
    return int(ms), int(seq)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--channel")
    group.add_argument("--stream")
    args = parser.parse_args()
    cache = LocalCache()

    def show(event):
        print(json.dumps(event), flush=True)

    listener = InvalidationListener(redis.Redis.from_url(args.url), cache, channel=args.channel,
                                    stream=args.stream, on_event=show)
    listener.start()
    try:
        while listener.is_alive():
            listener.join(1)
    except KeyboardInterrupt:
        listener.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
