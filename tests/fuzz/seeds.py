#!/usr/bin/env python3
"""seeds.py — writes the seed inputs of the fuzz targets (tests/fuzz/) into
tests/fuzz/corpus/<target>/, from EventMQ's captured messages
(/work/shared/vectors/eventmq-0.3.13.json or the file named as argument 1) and
from valid examples of emq's own messages, headers, payloads, config files,
queue lists, cron expressions and stored schedules (the same ones the docs and unit tests use).
Each file is named after the SHA-1 of its bytes, as libFuzzer names what it
adds, so running this again adds nothing twice. Run `make fuzz-merge` after it
to drop seeds that add no coverage.

    tests/fuzz/seeds.py [VECTORS.json]
"""
import hashlib
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
VECTORS = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/vectors/eventmq-0.3.13.json"


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, hashlib.sha1(data).hexdigest()), "wb") as out:
        out.write(data)


# A little msgpack, enough for payloads and BATCH frames (no module needed).
def mp(value):
    if value is None:
        return b"\xc0"
    if value is True:
        return b"\xc3"
    if value is False:
        return b"\xc2"
    if isinstance(value, int):
        if 0 <= value < 128:
            return bytes([value])
        if -32 <= value < 0:
            return struct.pack("b", value)
        return b"\xd3" + struct.pack(">q", value)
    if isinstance(value, float):
        return b"\xcb" + struct.pack(">d", value)
    if isinstance(value, bytes):
        return b"\xc4" + bytes([len(value)]) + value if len(value) < 256 else \
            b"\xc5" + struct.pack(">H", len(value)) + value
    if isinstance(value, str):
        raw = value.encode()
        if len(raw) < 32:
            return bytes([0xa0 | len(raw)]) + raw
        return b"\xd9" + bytes([len(raw)]) + raw
    if isinstance(value, list):
        head = bytes([0x90 | len(value)]) if len(value) < 16 else \
            b"\xdc" + struct.pack(">H", len(value))
        return head + b"".join(mp(v) for v in value)
    if isinstance(value, dict):
        head = bytes([0x80 | len(value)]) if len(value) < 16 else \
            b"\xde" + struct.pack(">H", len(value))
        return head + b"".join(mp(k) + mp(v) for k, v in value.items())
    raise TypeError(value)


# The emqp target's input: flags byte, then 2-byte big-endian length + frame.
def message(frames, with_identity=False, small_limit=False):
    flags = (1 if with_identity else 0) | (2 if small_limit else 0)
    out = bytes([flags])
    for frame in frames:
        if isinstance(frame, str):
            frame = frame.encode()
        out += struct.pack(">H", len(frame)) + frame
    return out


def emq(command, *frames, msgid="m-1"):
    return ["", "eMQP/1.0", command, msgid] + list(frames)


RUN = {"kind": "run", "library": "libemq_examples.so", "function": "add",
       "args": [2, 3]}
EXEC = {"kind": "exec", "argv": ["/bin/echo", "hi"], "stdin": b"input",
        "env": {"LANG": "C"}, "cwd": "/tmp"}

# emq's own messages (docs/protocol.md), one of each command.
EMQ_MESSAGES = [
    emq("ACK", "acked-id"), emq("ACK", "acked-id", "emq/3"),
    emq("HEARTBEAT", "1795398200.0280507"),
    emq("HEARTBEAT", "1795398200.5", '{"jobs":1}'),
    emq("DISCONNECT"), emq("KBYE"), emq("READY"), emq("HELLO"), emq("STATUS"),
    emq("ROUTER_SHOW_WORKERS"), emq("ROUTER_SHOW_SCHEDULERS"),
    emq("INFORM", '[[10, "default"]]', "worker", "emq/3"),
    emq("INFORM", "", "scheduler"),
    emq("REQUEST", "default", "reply-requested,timeout:10", mp(RUN)),
    emq("REQUEST", "default", "", mp(EXEC), "7", "1"),
    emq("REPLY", '{"value": 5}'), emq("REPLY", '{"value": 5}', "req-id"),
    emq("SCHEDULE", "default", "guarantee,name:n1", "60", mp(RUN), ""),
    emq("SCHEDULE", "default", "tz:Europe/Berlin", "-1", mp(RUN), "0 2 * * *"),
    emq("UNSCHEDULE", "default", "guarantee", "-1", mp(RUN), "* * * * *"),
    emq("DONE", "req-id", "7", "ok", mp(5), "wall_us=1 cpu_us=1 maxrss_kb=1"),
    emq("RESULT", "req-id", "failed", "boom", ""),
    emq("ERROR", "req-id", "QUEUE_FULL", "queue default is full"),
    emq("FETCH", "req-id"), emq("CANCEL", "req-id"), emq("CANCEL", "req-id", "7"),
    emq("DEAD_LIST"), emq("DEAD_RETRY", "*"), emq("DEAD_PURGE"),
    emq("RETURN", "req-id", "9"),
]


def batch(messages):
    # Each message's frames after the protocol frame, as bin.
    return mp([[f.encode() if isinstance(f, str) else f for f in m[2:]]
               for m in messages])


def main():
    with open(VECTORS) as f:
        vectors = json.load(f)
    for record in vectors:
        frames = [bytes.fromhex(fr["hex"]) for fr in record["frames"]]
        put("emqp", message(frames, record.get("identity_frame", False)))
        body = frames[1:] if record.get("identity_frame") else frames
        command = record.get("command")
        if command in ("REQUEST", "SCHEDULE", "UNSCHEDULE") and len(body) >= 7:
            put("headers", body[5])
            put("payload", body[6] if command == "REQUEST" else body[7])
        if command == "INFORM" and len(body) >= 5:
            put("queuespec", body[4])
        if command in ("SCHEDULE", "UNSCHEDULE") and len(body) >= 9 and body[8]:
            put("cron", body[8])
    for m in EMQ_MESSAGES:
        put("emqp", message(m))
        put("emqp", message([b"peer-1"] + m, with_identity=True))
    put("emqp", message(emq("REQUEST", "default", "", b"x" * 100), small_limit=True))
    put("emqp", message(emq("BATCH", batch([emq("READY", msgid="m1"),
                                            emq("DONE", "r", "1", "ok", mp(1), "",
                                                msgid="m2")]))))
    put("emqp", message([b"jm-1"] + emq("BATCH", batch(EMQ_MESSAGES[:12])),
                        with_identity=True))

    for text in ["reply-requested", "reply-requested,retry-count:3,timeout:10",
                 "guarantee,nohaste,run_count:5", "delay:30", "eta:1795398200",
                 "fence:42,reply-requested", "name:nightly,tz:Europe/Berlin,misfire:skip",
                 "unknown-header,x:y", ""]:
        put("headers", text)

    for value in [RUN, EXEC, {"kind": "exec", "argv": ["/bin/true"]},
                  {"kind": "run", "library": "x.so", "function": "f", "args": None}]:
        put("payload", mp(value))
    for text in ['{"a": [1, 2.5, "x", null, true]}', '"\\u0000"', "[[[[]]]]",
                 "18446744073709551615", "-9223372036854775808", "1e308"]:
        put("payload", text)

    with open(os.path.join(HERE, "..", "..", "docs", "configuration.md")) as f:
        doc = f.read()
    start = doc.index("```ini\n") + len("```ini\n")
    example = doc[start:doc.index("```", start)]
    put("config", example)
    # The first byte picks the section (fuzz_config.c): '[' % 5 = 1, jobmanager.
    for section in ["router", "scheduler", "cli"]:
        put("config", "[%s]\n%s" % (section, example.split("[%s]\n" % section)[1]))
    put("config", "[jobmanager]\nqueues = 20,heavy default\nconcurrent_jobs = 0x10\n")
    put("config", "[global]\nsetup_path = libx.so\nsetup_callable = init\n")

    for text in ['[[20, "heavy"], [10, "default"]]', '["a", "b"]', "", "20,heavy default",
                 "default", '[[0, "q"]]']:
        put("queuespec", text)

    for text in ["* * * * *", "0 2 * * *\nEurope/Berlin", "*/15 9-17 * * mon-fri",
                 "0 0 */10 * 1", "30 2 * * *\nEurope/Berlin", "5/15 1-30/5 1,15 jan-mar sun",
                 "@yearly", "@monthly", "@weekly", "@daily", "@midnight", "@hourly",
                 "@reboot", "0 0 30 2 *", "* * * * *\n\n90", "* * * * *\nUTC\n15m",
                 "0 * * * *\nAmerica/New_York\n2h"]:
        put("cron", text)

    # Stored schedules as sched_to_json writes them (etcd mode).
    import base64
    for interval, cron, tz in [(60, "", ""), (-1, "0 2 * * *", "Europe/Berlin"),
                               (-1, "@reboot", ""), (1, "", "")]:
        record = {"name": "nightly", "spec": cron or "every %ds" % interval,
                  "queue": "default", "headers": "timeout:5",
                  "payload": base64.b64encode(mp(RUN)).decode(), "interval_s": interval,
                  "cron": cron, "tz": tz, "misfire_skip": False, "nohaste": interval == 1,
                  "created_at": 1795398200.5, "runs_left": -1, "anchor": 1795398200,
                  "next_fire": 1795398260, "last_fire": 1795398200,
                  "acked_fire": 1795398200, "last_outcome": "ok"}
        put("schedule", json.dumps(record, separators=(",", ":")))


if __name__ == "__main__":
    main()
