#!/usr/bin/env python3
"""The soak's clients that loadgen and reactor bench do not cover (scripts/soak.sh).

    soak-clients.py badframes --port P --max-frame N --duration S
        Against a line-framed echo (`reactor serve echo --framing line --max-frame N`):
        connections that send an over-long line, binary garbage with no newline, or good
        lines and then an over-long one. Each must be closed by the server (good lines
        first echoed in full), while one well-behaved connection, open all along, keeps
        getting every line back byte for byte.
    soak-clients.py resets --echo-port P --line-port Q --duration S
        Clients that reset (SO_LINGER 0) mid-stream: after filling the raw echo's output
        without reading, after half a line to the line echo, after reading half an echo.
        A fresh connection then checks that the echo still answers.
    soak-clients.py misc --offset N --duration S
        `serve all`'s other services over TCP and UDP, each reply checked: chargen's
        pattern, daytime's CRLF line, time's 4 bytes (against this host's clock), qotd's
        quote, discard's silence; UDP echo byte for byte; UDP requests from many source
        addresses (127.1.X.Y, 8192 of them, more than the reply guard's table holds);
        none answered from a refused source port (7).

Each prints one line of key=value counts on stdout and exits 1, naming the first
failure on stderr, when a reply was wrong, missing, or a connection was not closed when
it had to be. Every wait has a timeout.
"""

import argparse
import os
import socket
import struct
import sys
import time

HOST = "127.0.0.1"
TIMEOUT = 10.0


class Failure(Exception):
    pass


def connect(port):
    sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def reset(sock):
    """Closes with an RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_exactly(sock, count):
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise Failure(f"connection closed after {len(data)} of {count} bytes")
        data += chunk
    return bytes(data)


def read_to_end(sock, limit=1 << 20):
    data = bytearray()
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return bytes(data)
        data += chunk
        if len(data) > limit:
            raise Failure(f"more than {limit} bytes before the end")


def closed_by_server(sock, deadline=5.0):
    """True once the server closes (EOF or RST), reading and dropping what comes first."""
    sock.settimeout(deadline)
    end = time.monotonic() + deadline
    try:
        while time.monotonic() < end:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    return False


def echo_line(sock, line):
    sock.sendall(line)
    back = read_exactly(sock, len(line))
    if back != line:
        raise Failure(f"line echo: sent {line[:40]!r}..., got {back[:40]!r}...")
    return len(line)


def badframes(args):
    counts = dict(bad_closed=0, overlong=0, garbage=0, good_then_overlong=0, verified_bytes=0)
    good = connect(args.port)
    serial = 0
    end = time.monotonic() + args.duration
    while time.monotonic() < end:
        kind = serial % 3
        serial += 1
        bad = connect(args.port)
        if kind == 0:
            bad.sendall(b"x" * (args.max_frame + 100))
            counts["overlong"] += 1
        elif kind == 1:
            garbage = bytes((serial * 7 + i * 13) % 256 for i in range(args.max_frame * 2))
            bad.sendall(garbage.replace(b"\n", b"\0"))
            counts["garbage"] += 1
        else:
            lines = b"".join(b"line %d of %d\n" % (i, serial) for i in range(20))
            bad.sendall(lines)
            if read_exactly(bad, len(lines)) != lines:
                raise Failure("the good lines before an over-long one were not echoed as sent")
            counts["verified_bytes"] += len(lines)
            bad.sendall(b"y" * (args.max_frame + 1) + b"\n")
            counts["good_then_overlong"] += 1
        if not closed_by_server(bad):
            raise Failure(f"bad frame kind {kind}: the server did not close the offending connection within 5 s")
        bad.close()
        counts["bad_closed"] += 1
        counts["verified_bytes"] += echo_line(good, b"still here %d %s\n" % (serial, b"z" * (serial % 200)))
        time.sleep(0.005)
    good.close()
    return counts


def resets(args):
    counts = dict(reset_full=0, reset_half_line=0, reset_half_echo=0, verified_bytes=0)
    serial = 0
    end = time.monotonic() + args.duration
    while time.monotonic() < end:
        kind = serial % 3
        serial += 1
        if kind == 0:
            sock = connect(args.echo_port)
            sock.setblocking(False)
            chunk = b"r" * 65536
            sent = 0
            try:
                while sent < 4 << 20:
                    sent += sock.send(chunk)
            except BlockingIOError:
                pass
            reset(sock)
            counts["reset_full"] += 1
        elif kind == 1:
            sock = connect(args.line_port)
            sock.sendall(b"half a line that never ends " * 10)
            reset(sock)
            counts["reset_half_line"] += 1
        else:
            sock = connect(args.echo_port)
            payload = os.urandom(32768)
            sock.sendall(payload)
            got = read_exactly(sock, 16384)
            if got != payload[:16384]:
                raise Failure("echo before a reset: the first half differs")
            counts["verified_bytes"] += len(got)
            reset(sock)
            counts["reset_half_echo"] += 1
        if serial % 10 == 0:
            check = connect(args.echo_port)
            counts["verified_bytes"] += echo_line(check, b"after resets %d\n" % serial)
            check.close()
        time.sleep(0.005)
    return counts


CHARGEN_LINE = 74


def check_chargen(data, start=None):
    """Whole lines of the RFC 864 pattern, each one character on from the one before."""
    if len(data) % CHARGEN_LINE:
        raise Failure(f"chargen: {len(data)} bytes is not whole lines")
    first = None
    for index in range(0, len(data), CHARGEN_LINE):
        line = data[index:index + CHARGEN_LINE]
        if line[72:] != b"\r\n":
            raise Failure("chargen: a line without CRLF")
        offset = line[0] - 0x20
        if first is None:
            first = offset
        elif offset != (first + index // CHARGEN_LINE) % 95:
            raise Failure("chargen: a line out of sequence")
        expected = bytes(0x20 + (offset + column) % 95 for column in range(72))
        if line[:72] != expected:
            raise Failure(f"chargen: line {line[:72]!r} is not the pattern")


def check_time(data):
    if len(data) != 4:
        raise Failure(f"time: {len(data)} bytes, not 4")
    value = struct.unpack("!I", data)[0]
    now = (int(time.time()) + 2208988800) % (1 << 32)
    if abs(value - now) > 5:
        raise Failure(f"time: {value}, this host says {now}")


def check_daytime(data):
    if not data.endswith(b"\r\n") or len(data) > 64 or b"UTC" not in data:
        raise Failure(f"daytime: {data!r}")


def check_qotd(data):
    if not 1 <= len(data) <= 511 or not data.endswith(b"\r\n"):
        raise Failure(f"qotd: {len(data)} bytes: {data[:60]!r}")


def udp_ask(port, payload, source=None, expect=True):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(source if isinstance(source, tuple) else (source or HOST, 0))
        sock.settimeout(2.0 if expect else 0.2)
        sock.sendto(payload, (HOST, port))
        try:
            data, _ = sock.recvfrom(65536)
        except socket.timeout:
            if expect:
                raise Failure(f"UDP port {port}: no reply within 2 s")
            return None
        if not expect:
            raise Failure(f"UDP port {port}: a reply to refused source {source}")
        return data
    finally:
        sock.close()


def misc(args):
    port = {name: args.offset + number for name, number in
            dict(echo=7, discard=9, daytime=13, qotd=17, chargen=19, time=37).items()}
    counts = dict(tcp_chargen=0, tcp_daytime=0, tcp_time=0, tcp_qotd=0, tcp_discard=0,
                  udp_echo=0, udp_chargen=0, udp_daytime=0, udp_time=0, udp_qotd=0, udp_discard=0,
                  udp_sources=0, udp_refused_unanswered=0, verified_bytes=0)
    serial = 0
    end = time.monotonic() + args.duration
    while time.monotonic() < end:
        serial += 1
        sock = connect(port["chargen"])
        data = read_exactly(sock, CHARGEN_LINE * (20 + serial % 100))
        check_chargen(data)
        sock.close()
        counts["tcp_chargen"] += 1
        for name, check in (("daytime", check_daytime), ("time", check_time), ("qotd", check_qotd)):
            sock = connect(port[name])
            check(read_to_end(sock, 4096))
            sock.close()
            counts["tcp_" + name] += 1
        sock = connect(port["discard"])
        sock.sendall(b"d" * 65536)
        sock.shutdown(socket.SHUT_WR)
        if read_to_end(sock, 0):
            raise Failure("discard sent something back")
        sock.close()
        counts["tcp_discard"] += 1

        payload = os.urandom(1 + serial % 1400)
        if udp_ask(port["echo"], payload) != payload:
            raise Failure("UDP echo: the reply differs from the request")
        counts["udp_echo"] += 1
        counts["verified_bytes"] += len(payload)
        reply = udp_ask(port["chargen"], b"")
        if len(reply) != 444:
            raise Failure(f"UDP chargen: {len(reply)} bytes, not 444")
        check_chargen(reply)
        counts["udp_chargen"] += 1
        check_daytime(udp_ask(port["daytime"], b"?"))
        counts["udp_daytime"] += 1
        check_time(udp_ask(port["time"], b""))
        counts["udp_time"] += 1
        check_qotd(udp_ask(port["qotd"], b"q"))
        counts["udp_qotd"] += 1
        # A new source address each time, cycling through more than the guard's table.
        for _ in range(20):
            sources = counts["udp_sources"]
            source = f"127.1.{sources // 256 % 32}.{sources % 256}"
            check_daytime(udp_ask(port["daytime"], b"", source=source))
            counts["udp_sources"] += 1
        if serial % 10 == 0:
            udp_ask(port["discard"], b"x" * 100, expect=False)
            counts["udp_discard"] += 1
            try:
                udp_ask(port["echo"], b"loop?", source=("127.2.0.1", 7), expect=False)
                counts["udp_refused_unanswered"] += 1
            except OSError:
                pass  # not root, or another soak holds the port: skipped this time
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    bad = sub.add_parser("badframes")
    bad.add_argument("--port", type=int, required=True)
    bad.add_argument("--max-frame", type=int, required=True)
    rst = sub.add_parser("resets")
    rst.add_argument("--echo-port", type=int, required=True)
    rst.add_argument("--line-port", type=int, required=True)
    other = sub.add_parser("misc")
    other.add_argument("--offset", type=int, required=True)
    for each in (bad, rst, other):
        each.add_argument("--duration", type=float, required=True)
    args = parser.parse_args()
    try:
        counts = dict(badframes=badframes, resets=resets, misc=misc)[args.command](args)
    except (Failure, OSError) as error:
        print(f"{args.command}: FAILED: {error}", file=sys.stderr)
        return 1
    print(" ".join(f"{key}={value}" for key, value in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
