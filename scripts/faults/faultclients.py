#!/usr/bin/env python3
"""The clients of the fault suite (scripts/faults/faults.sh). Each prints one JSON line
of what it saw; the suite judges it. Every run is bounded in time.

    faultclients.py reflect PORT SECONDS
        a UDP reflector (not the reactor): the link's own loss, duplication, reordering
        and delay are measured against it before any scenario trusts the faults
    faultclients.py probe HOST PORT COUNT INTERVAL_MS
        numbered UDP probes to a reflector: sent, received, duplicates, reordered, RTTs
    faultclients.py stream HOST PORT --connections N --seconds S [--framing raw|line]
                           [--window BYTES] [--drain SECONDS]
        N connections to an echo, each sending its own deterministic stream (random
        chunk sizes; lines of varying length with --framing line) with at most WINDOW
        bytes unanswered, checking every byte that comes back against what was sent:
        a lost, duplicated or reordered byte is a mismatch. After S seconds it stops
        sending and waits up to DRAIN seconds for the rest. Connection ends are recorded
        with their time (seconds from the start) and kind.
    faultclients.py udp HOST --port SERVICE=PORT... --rate R --seconds S
        R requests per second to each UDP service, every echo payload unique; counts the
        replies, checks echo replies byte for byte against a request sent, and counts the
        replies each request got (more than the copies the link made would be amplification)
    faultclients.py hold HOST PORT N
        N connections that each get one echo back, then hold still until killed
"""
import json
import os
import random
import select
import socket
import sys
import time


def out(record):
    print(json.dumps(record), flush=True)


def reflect(port, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", int(port)))
    s.settimeout(0.2)
    print("ready", flush=True)
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        try:
            data, peer = s.recvfrom(2048)
        except socket.timeout:
            continue
        s.sendto(data, peer)


def probe(host, port, count, interval_ms):
    count, interval = int(count), float(interval_ms) / 1000
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    sent_at, seen, rtts = {}, {}, []
    duplicates = reordered = highest = 0
    start = time.monotonic()
    next_send, i = start, 0
    end = start + count * interval + 1.0  # a second for the last answers
    while time.monotonic() < end:
        now = time.monotonic()
        if i < count and now >= next_send:
            sent_at[i] = now
            s.sendto(i.to_bytes(4, "big") + b"x" * 60, (host, int(port)))
            i += 1
            next_send += interval
        timeout = max(0.0, min(next_send - now, end - now)) if i < count else max(0.0, end - now)
        ready, _, _ = select.select([s], [], [], timeout)
        while ready:
            try:
                data, _ = s.recvfrom(2048)
            except BlockingIOError:
                break
            n = int.from_bytes(data[:4], "big")
            if n in seen:
                duplicates += 1
                continue
            seen[n] = True
            rtts.append((time.monotonic() - sent_at[n]) * 1000)
            if n < highest:
                reordered += 1
            highest = max(highest, n)
    rtts.sort()
    pick = lambda q: round(rtts[min(len(rtts) - 1, int(q * len(rtts)))], 1) if rtts else None
    out({"sent": count, "received": len(seen), "loss": round(1 - len(seen) / count, 4),
         "duplicates": duplicates, "reordered": reordered,
         "rtt_ms": {"min": pick(0), "p50": pick(0.5), "p99": pick(0.99), "max": pick(1)}})


def stream_bytes(conn_id, framing):
    """Endless deterministic stream of one connection, in chunks."""
    rng = random.Random(conn_id)
    if framing == "line":
        seq = 0
        while True:
            body = (f"c{conn_id} s{seq} ").encode() + bytes(rng.choice(b"abcdefghij") for _ in range(rng.randint(0, 200)))
            seq += 1
            yield body + b"\n"
    else:
        while True:
            n = rng.randint(1, 4096)
            yield rng.randbytes(n)


class Stream:
    def __init__(self, conn_id, host, port, framing, window):
        self.id = conn_id
        self.source = stream_bytes(conn_id, framing)
        self.unanswered = bytearray()  # sent, not yet echoed, in order
        self.pending = b""  # generated, not yet sent
        self.sent = self.verified = 0
        self.window = window
        self.end = None
        self.last_verified_at = None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.connected = False
        self.sock.connect_ex((host, port))

    def fileno(self):
        return self.sock.fileno()


def stream(host, port, args):
    opts = {"--connections": "100", "--seconds": "10", "--framing": "raw", "--window": "16384", "--drain": "20"}
    for k, v in zip(args[::2], args[1::2]):
        opts[k] = v
    n, seconds, framing = int(opts["--connections"]), float(opts["--seconds"]), opts["--framing"]
    window, drain = int(opts["--window"]), float(opts["--drain"])
    port = int(port)
    start, started_unix = time.monotonic(), time.time()
    streams = [Stream(i, host, port, framing, window) for i in range(n)]
    errors, mismatches = {}, 0
    stop_sending = start + seconds
    deadline = stop_sending + drain

    def finish(st, kind):
        nonlocal errors
        if st.end is None:
            st.end = (kind, round(time.monotonic() - start, 2))
            errors[kind] = errors.get(kind, 0) + 1
            st.sock.close()

    while True:
        now = time.monotonic()
        live = [st for st in streams if st.end is None]
        if now >= deadline or not live:
            break
        if now >= stop_sending and all(not st.unanswered and not st.pending for st in live):
            break
        sending = now < stop_sending
        readers = live
        writers = [st for st in live if not st.connected or (sending and len(st.unanswered) < st.window) or st.pending]
        r, w, _ = select.select(readers, writers, [], 0.1)
        for st in w:
            if st.end is not None:
                continue
            if not st.connected:
                err = st.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    finish(st, "connect: " + os.strerror(err))
                    continue
                st.connected = True
            if not st.pending and sending and len(st.unanswered) < st.window:
                st.pending = next(st.source)
            if st.pending:
                try:
                    k = st.sock.send(st.pending)
                except BlockingIOError:
                    continue
                except OSError as e:
                    finish(st, "send: " + os.strerror(e.errno))
                    continue
                st.unanswered += st.pending[:k]
                st.pending = st.pending[k:]
                st.sent += k
        for st in r:
            if st.end is not None:
                continue
            try:
                data = st.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                finish(st, "recv: " + os.strerror(e.errno))
                continue
            if not data:
                finish(st, "end of file")
                continue
            expected = bytes(st.unanswered[: len(data)])
            if data != expected:
                mismatches += 1
                finish(st, "mismatch")
                continue
            del st.unanswered[: len(data)]
            st.verified += len(data)
            st.last_verified_at = round(time.monotonic() - start, 2)
    for st in streams:
        if st.end is None:
            st.sock.close()
    ends = {}
    for st in streams:
        if st.end:
            ends.setdefault(st.end[0], []).append(st.end[1])
    out({"connections": n, "framing": framing, "started_unix": round(started_unix, 3), "seconds": round(time.monotonic() - start, 2),
         "bytes_sent": sum(st.sent for st in streams),
         "bytes_verified": sum(st.verified for st in streams),
         "bytes_unanswered": sum(len(st.unanswered) for st in streams if st.end is None),
         "mismatches": mismatches, "errors": errors,
         "ends": {k: {"count": len(v), "first_s": min(v), "last_s": max(v)} for k, v in ends.items()},
         "open_at_end": sum(1 for st in streams if st.end is None),
         "min_verified_per_connection": min(st.verified for st in streams),
         "last_progress_s": max((st.last_verified_at or 0) for st in streams)})


def udp(host, args):
    ports, rate, seconds = {}, 10.0, 10.0
    it = iter(args)
    for k in it:
        v = next(it)
        if k == "--port":
            name, p = v.split("=")
            ports[name] = int(p)
        elif k == "--rate":
            rate = float(v)
        elif k == "--seconds":
            seconds = float(v)
    socks = {}
    for name, p in ports.items():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.connect((host, p))
        socks[s] = name
    stats = {name: {"requests": 0, "replies": 0, "bad": 0, "max_replies_per_request": 0, "reply_bytes": 0, "request_bytes": 0}
             for name in ports}
    echo_replies = {}
    interval = 1 / rate
    start = time.monotonic()
    next_send, seq = start, 0
    end = start + seconds + 2.0
    while time.monotonic() < end:
        now = time.monotonic()
        if now < start + seconds and now >= next_send:
            for s, name in socks.items():
                payload = f"{name} {seq} ".encode() + b"p" * (seq % 64)
                if name == "echo":
                    echo_replies[payload] = 0
                try:
                    s.send(payload)
                    stats[name]["requests"] += 1
                    stats[name]["request_bytes"] += len(payload)
                except OSError:
                    pass
            seq += 1
            # A client starved of CPU does not send what it owes at once: the rate stays
            # under the server's reply guard.
            next_send = max(next_send + interval, now)
        r, _, _ = select.select(list(socks), [], [], max(0.0, min(0.05, next_send - now)))
        for s in r:
            name = socks[s]
            while True:
                try:
                    data = s.recv(65536)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                st = stats[name]
                st["replies"] += 1
                st["reply_bytes"] += len(data)
                if name == "echo":
                    if data not in echo_replies:
                        st["bad"] += 1
                    else:
                        echo_replies[data] += 1
                        st["max_replies_per_request"] = max(st["max_replies_per_request"], echo_replies[data])
                elif name == "time" and len(data) != 4:
                    st["bad"] += 1
                elif name == "daytime" and not data.endswith(b"\r\n"):
                    st["bad"] += 1
    out(stats)


def hold(host, port, n):
    socks = []
    for i in range(int(n)):
        s = socket.create_connection((host, int(port)), timeout=20)
        s.sendall(b"hold %d\n" % i)
        got = b""
        while len(got) < len(b"hold %d\n" % i):
            got += s.recv(100)
        socks.append(s)
    print("ready", flush=True)
    time.sleep(3600)


if __name__ == "__main__":
    cmd, rest = sys.argv[1], sys.argv[2:]
    if cmd == "reflect":
        reflect(*rest)
    elif cmd == "probe":
        probe(*rest)
    elif cmd == "stream":
        stream(rest[0], rest[1], rest[2:])
    elif cmd == "udp":
        udp(rest[0], rest[1:])
    elif cmd == "hold":
        hold(*rest)
    else:
        sys.exit(f"unknown command {cmd}")
