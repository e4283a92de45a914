#!/usr/bin/env python3
"""drive.py: a lockstep load for the budgets: a fixed number of requests, each checked.

    drive.py raw|line|int32|udp|churn HOST PORT REQUESTS [--burst K] [--proxy-v2]

raw: one TCP connection, one 64-byte request in flight (ping-pong).
line: one TCP connection; K lines of 32 bytes (with the '\\n') sent in one send, and the
  next K only once all K are back.
int32: as line, with frames of a 4-byte big-endian length 32 and 32 bytes.
udp: one connected UDP socket, one 64-byte datagram in flight.
churn: each 64-byte request on a connection of its own: connect, send, read the echo,
  half-close, read the server's FIN, close.
--proxy-v2: every TCP connection starts with a PROXY protocol v2 header (TCP over IPv4,
  no TLVs) for a server run with `--proxy-protocol v2` (Benchmarks/proxy-bench.sh); with
  churn it goes out in one send with the request, as a balancer relaying a client that
  spoke first does.

Lockstep, not refill-as-echoes-arrive: how many requests the server finds per read then
depends only on K, not on timing, so the server's instruction count per request repeats
from run to run (budgets.sh divides the difference of two runs by their difference in
requests). REQUESTS counts lines, frames or datagrams and must be a multiple of K. Every
echo is compared with what was sent; a wrong or missing echo exits 1 within 30 s.
"""
import argparse
import ipaddress
import socket
import struct
import sys

TIMEOUT = 30


def payload(i, size):
    # Different bytes for consecutive requests, so a stale or repeated echo is caught.
    return bytes((i + j) % 26 + 97 for j in range(size))


def request(proto, i):
    if proto == "raw":
        return payload(i, 64)
    if proto == "line":
        return payload(i, 31) + b"\n"
    return struct.pack(">I", 32) + payload(i, 32)


def proxy_v2(sock):
    """A v2 header naming the socket's own addresses (what a balancer would put)."""
    source, source_port = sock.getsockname()[:2]
    destination, destination_port = sock.getpeername()[:2]
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11, 0, 12])
            + ipaddress.IPv4Address(source).packed + ipaddress.IPv4Address(destination).packed
            + struct.pack(">HH", source_port, destination_port))


def churn(args):
    for i in range(args.requests):
        sock = socket.create_connection((args.host, args.port), timeout=TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent = payload(i, 64)
        sock.sendall((proxy_v2(sock) if args.proxy_v2 else b"") + sent)
        if recv_exactly(sock, len(sent)) != sent:
            sys.exit(f"drive: the echo on connection {i} differs")
        sock.shutdown(socket.SHUT_WR)
        if sock.recv(1):
            sys.exit("drive: the server sent more than it was sent")
        sock.close()


def recv_exactly(sock, n):
    parts, got = [], 0
    while got < n:
        part = sock.recv(n - got)
        if not part:
            sys.exit(f"drive: the server closed the connection with {n - got} bytes owed")
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("proto", choices=["raw", "line", "int32", "udp", "churn"])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("requests", type=int)
    parser.add_argument("--burst", type=int, default=1)
    parser.add_argument("--proxy-v2", action="store_true")
    args = parser.parse_args()
    burst = args.burst if args.proto in ("line", "int32") else 1
    if args.requests <= 0 or burst <= 0 or args.requests % burst:
        sys.exit("drive: REQUESTS must be a positive multiple of --burst")
    if args.proto == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(TIMEOUT)
        sock.connect((args.host, args.port))
        for i in range(args.requests):
            sent = payload(i, 64)
            sock.send(sent)
            if sock.recv(65536) != sent:
                sys.exit(f"drive: datagram {i} came back different")
        return
    if args.proto == "churn":
        churn(args)
        return
    sock = socket.create_connection((args.host, args.port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if args.proxy_v2:
        sock.sendall(proxy_v2(sock))
    for first in range(0, args.requests, burst):
        sent = b"".join(request(args.proto, i) for i in range(first, first + burst))
        sock.sendall(sent)
        if recv_exactly(sock, len(sent)) != sent:
            sys.exit(f"drive: the echo of requests {first}..{first + burst - 1} differs")
    sock.shutdown(socket.SHUT_WR)
    if sock.recv(1):
        sys.exit("drive: the server sent more than it was sent")


if __name__ == "__main__":
    try:
        main()
    except OSError as error:  # refused, reset, timed out: the message is enough
        sys.exit(f"drive: {error}")
