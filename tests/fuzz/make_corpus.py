#!/usr/bin/python3
"""Rebuilds the committed seed corpus of the fuzz targets from real inputs.

corpus/pgoutput/ comes from the PostgreSQL 15 capture in tests/unit/data (format: see
tests/unit/support/captured_stream.h), in fuzz_pgoutput's input format:
  single-*  0x00 + one message, for pgoutput::decode;
  txn-*     0x01 + one transaction as 2-byte big-endian length-prefixed messages,
            preceded by the Relation messages a session would have received before it;
  stream-*  the whole capture as one sequence (0x01: stop at the first error, 0x03: go on).
corpus/rules/ holds 'R' + every rules file of the repository, and 'K' + every key
template in them plus hand-written edge cases (fuzz_rules' input format).

Run from anywhere: /usr/bin/python3 tests/fuzz/make_corpus.py
"""

import os
import re
import shutil
import struct

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CAPTURE = os.path.join(ROOT, "tests", "unit", "data", "pg15_pgoutput_stream.txt")


def load_capture(path):
    messages = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            lsn, xid, data = line.split()
            hi, lo = lsn.split("/")
            messages.append(((int(hi, 16) << 32) | int(lo, 16), int(xid), bytes.fromhex(data)))
    return messages


def sequence(mode, payloads):
    out = bytearray([mode])
    for p in payloads:
        out += struct.pack(">H", len(p)) + p
    return bytes(out)


def reset_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)


def write(directory, name, data):
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def pgoutput_corpus(directory):
    reset_dir(directory)
    messages = load_capture(CAPTURE)
    for i, (lsn, _, data) in enumerate(messages):
        write(directory, "single-%02d-%s-%X" % (i, chr(data[0]), lsn), b"\x00" + data)

    relations = {}  # OID -> latest Relation message, as a session's cache holds them
    txn, known_before = None, {}
    for lsn, xid, data in messages:
        kind = chr(data[0])
        if kind == "B":
            txn, known_before = [data], dict(relations)
        elif txn is not None:
            txn.append(data)
        if kind == "R":
            relations[struct.unpack(">I", data[1:5])[0]] = data
        if kind == "C" and txn is not None:
            write(directory, "txn-%d" % xid, sequence(1, list(known_before.values()) + txn))
            txn = None

    payloads = [data for _, _, data in messages]
    write(directory, "stream-all", sequence(1, payloads))
    write(directory, "stream-all-keep-going", sequence(3, payloads))


# Edge cases of the template grammar (SPEC section 3), each with row values after a NUL:
# "\x01" is NULL, "\x02" an unchanged TOASTed value.
EXTRA_TEMPLATES = [
    b"post_detail_{id}\x0042",
    b"{{literal}}_{id}}}\x007",
    b"{old.slug|lower}:{new.slug|upper}\x00Hello\x00World",
    b"{title|md5}\x00caf\xc3\xa9",
    b"{flag|python}\x00t",
    b"{flag|python}\x00\x01",
    b"{body}\x00\x02\x00old body",
    b"user:{author_id}:*\x00a*b?[c]\\",
    b"{a|lower|upper|md5|python}_{b}\x00X\x00\x01",
    b"{col$1}_{\xc3\xa9t\xc3\xa9}",
    b"{}",
    b"{old.}",
    b"{new.x.y}",
    b"{x|}",
    b"{x|bogus}",
    b"unclosed {id",
    b"stray } brace",
    b"{a{b}",
    b"{1abc}",
]


def templates_of(node):
    """Every key template in a parsed rules file."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("delete", "delete_pattern", "bump_version", "vary_on") and isinstance(value, list):
                yield from (v for v in value if isinstance(v, str))
            else:
                yield from templates_of(value)
    elif isinstance(node, list):
        for item in node:
            yield from templates_of(item)


def rules_corpus(directory):
    reset_dir(directory)
    files = []
    for sub in ("rules", os.path.join("rules", "examples"), os.path.join("packaging", "rules.d")):
        base = os.path.join(ROOT, sub)
        files += [os.path.join(base, n) for n in sorted(os.listdir(base)) if n.endswith(".yaml")]
    templates = set()
    for path in files:
        with open(path, "rb") as f:
            text = f.read()
        write(directory, "rules-" + os.path.relpath(path, ROOT).replace(os.sep, "-"), b"R" + text)
        templates.update(templates_of(yaml.safe_load(text)))

    # The rule set built into fuzz_pgoutput exercises every option in one file.
    with open(os.path.join(HERE, "fuzz_pgoutput.cpp")) as f:
        builtin = re.search(r'R"\((.*?)\)"', f.read(), re.S).group(1)
    write(directory, "rules-fuzz_pgoutput-builtin.yaml", b"R" + builtin.encode())
    templates.update(templates_of(yaml.safe_load(builtin)))

    for i, t in enumerate(sorted(templates)):
        write(directory, "template-%02d" % i, b"K" + t.encode())
    for i, t in enumerate(EXTRA_TEMPLATES):
        write(directory, "template-edge-%02d" % i, b"K" + t)


def main():
    pgoutput_corpus(os.path.join(HERE, "corpus", "pgoutput"))
    rules_corpus(os.path.join(HERE, "corpus", "rules"))
    for name in ("pgoutput", "rules"):
        d = os.path.join(HERE, "corpus", name)
        print("corpus/%s: %d files, %d bytes" % (
            name, len(os.listdir(d)), sum(os.path.getsize(os.path.join(d, n)) for n in os.listdir(d))))


if __name__ == "__main__":
    main()
