#!/usr/bin/env python3
"""Writes the seed corpus of fuzz-wire (fuzz/corpus/wire): valid frames of
every type, batches, and a few broken ones. Byte 0 of each input is the
chunk size the fuzzer feeds the reader with (0: all at once)."""
import os
import struct
import sys

PBL_EFAILED, PBL_ENOFUNC, UV_ENOMEM = -20003, -20004, -12
VERSION = 4  # PBL__WIRE_VERSION (src/process/wire.h)


def head(ftype, flags, tag, length):
    return b"pblw" + bytes([VERSION, ftype, flags, 0]) + struct.pack(
        "<QQ", tag, length)


def call(name, data, tag=1, flags=1):
    pre = struct.pack("<H", len(name)) + name
    pre += b"\0" * (((len(name) + 3 + 15) & ~15) - len(pre))
    return head(1, flags, tag, len(pre) + len(data)) + pre + data


def result(data, tag=1):
    return head(2, 0, tag, len(data)) + data


def fail(err, code, msg, tag=1):
    body = struct.pack("<ii", err, code) + msg
    return head(3, 0, tag, len(body)) + body


def cancel(tag):
    return head(4, 0, tag, 0)


def skipped(tag):
    return head(5, 0, tag, 0)


def hello(pid, host):
    return head(6, 0, 0, 4 + len(host)) + struct.pack("<I", pid) + host


seeds = {
    "hello": b"\0" + hello(4242, b"node7") + head(7, 0, 0, 0)
    + result(b"r", 1),
    "bad-hello": b"\0" + hello(0, b"x"),
    "bye": b"\0" + call(b"a", b"x", 1, 0) + head(8, 0, 0, 0),
    "call": b"\0" + call(b"fn_echo", b"hello"),
    "call-empty": b"\0" + call(b"f", b""),
    "call-split": b"\x07" + call(b"do_job", bytes(range(256)) * 4),
    "result": b"\0" + result(b"\x01\x00\x00\x00"),
    "result-empty": b"\x01" + result(b""),
    "fail": b"\0" + fail(PBL_EFAILED, 42, b"bad thing 7"),
    "fail-nofunc": b"\x03" + fail(PBL_ENOFUNC, 0, b"not registered"),
    "batch": b"\0" + call(b"a", b"x", 1, 0) + call(b"b", b"yy", 2, 0)
    + result(b"z" * 600, 3) + fail(UV_ENOMEM, 0, b"", 4),
    "truncated": b"\0" + call(b"fn_echo", b"hello")[:-3],
    "bad-magic": b"\0" + b"pblx" + call(b"f", b"")[4:],
    "bad-pad": b"\0" + head(1, 0, 1, 16) + b"\x01\x00f\x00\x01" + b"\0" * 11,
    "big-len": b"\0" + head(2, 0, 1, 1 << 40),
    "cancel": b"\0" + call(b"a", b"x", 1, 0) + cancel(1),
    "skipped": b"\x05" + skipped(2) + result(b"r", 1),
    "bad-cancel-len": b"\0" + head(4, 0, 1, 3) + b"abc",
    "old-version": b"\0" + b"pblw\x03" + call(b"f", b"")[5:],
    "chunk-batch": b"\x09" + call(b"f", b"a", 1, 2) + call(b"f", b"b", 2, 2)
    + call(b"f", b"c", 3, 0) + result(b"A", 1) + skipped(2) + result(b"C", 3),
    "bad-flag": b"\0" + call(b"f", b"a", 1, 4),
}

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "corpus", "wire")
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
