#!/usr/bin/env python3
"""A Twisted client for `reactor serve echo --framing F`: sends COUNT frames of varied
sizes (empty ones included) with one of Twisted's own receivers, and checks that every
echoed frame comes back byte-exact and in order.

    twisted_echo_client.py HOST PORT MODE COUNT [--seed N] [--timeout SECONDS] [--window N]

MODE is int8, int16, int32 (Int8/16/32StringReceiver), netstring (NetstringReceiver),
crlf (LineReceiver, delimiter \\r\\n) or line (LineReceiver with delimiter \\n).

Prints one line and exits 0 when every frame matched:
    OK mode=int32 frames=5000 bytes=1234567 seconds=0.84
Otherwise prints what went wrong and exits non-zero: 1 mismatch, 2 timeout, 3 the
connection failed or closed early, 4 bad arguments.
"""

import argparse
import random
import sys
import time

from twisted.internet import protocol, reactor
from twisted.protocols import basic

# The server's default --max-frame is 65536; these stay inside it and inside what each
# receiver's MAX_LENGTH allows (raised below where Twisted's default is lower).
LARGEST = {"int8": 255, "int16": 20000, "int32": 60000, "netstring": 60000, "crlf": 16000, "line": 16000}


def make_payloads(mode, count, rng):
    """COUNT payloads: about 5% empty, most small, some medium, a few large, with bytes
    the framing must not confuse (delimiter pieces, digits, colons, commas)."""
    largest = LARGEST[mode]
    payloads = []
    for index in range(count):
        roll = rng.random()
        if roll < 0.05 or index == 0:
            size = 0
        elif roll < 0.65:
            size = rng.randint(1, 64)
        elif roll < 0.95:
            size = rng.randint(65, min(1024, largest))
        else:
            size = rng.randint(min(1025, largest), largest)
        if index == 1:
            size = largest
        data = bytearray(rng.getrandbits(8) for _ in range(size))
        if mode == "crlf":
            # Lone \r and \n are fine; only the pair \r\n would end the line early.
            data = data.replace(b"\r\n", b"\r.")
            # A payload ending in \r is fine too: \r\r\n still ends after the payload.
        elif mode == "line":
            data = data.replace(b"\n", b".")
        payloads.append(bytes(data))
    return payloads


class Checker:
    def __init__(self, mode, payloads, window):
        self.mode = mode
        self.payloads = payloads
        self.window = window
        self.sent = 0
        self.received = 0
        self.bytes = 0
        self.failure = None
        self.exit_code = 0
        self.started = time.monotonic()

    def fail(self, message, code):
        if self.failure is None:
            self.failure = message
            self.exit_code = code
            if reactor.running:
                reactor.stop()


def make_protocol(mode):
    if mode in ("int8", "int16", "int32"):
        base = {"int8": basic.Int8StringReceiver, "int16": basic.Int16StringReceiver, "int32": basic.Int32StringReceiver}[mode]
        send_name, receive_name = "sendString", "stringReceived"
    elif mode == "netstring":
        base = basic.NetstringReceiver
        send_name, receive_name = "sendString", "stringReceived"
    else:
        base = basic.LineReceiver
        send_name, receive_name = "sendLine", "lineReceived"

    class EchoChecker(base):
        MAX_LENGTH = 1 << 20
        if mode == "line":
            delimiter = b"\n"
        elif mode == "crlf":
            delimiter = b"\r\n"

        def connectionMade(self):
            self.checker = self.factory.checker
            self.fill()

        def fill(self):
            checker = self.checker
            send = getattr(self, send_name)
            # Keep up to `window` frames in flight: pipelined, but bounded.
            while checker.sent < len(checker.payloads) and checker.sent - checker.received < checker.window:
                send(checker.payloads[checker.sent])
                checker.sent += 1

        def frame(self, data):
            checker = self.checker
            index = checker.received
            if index >= len(checker.payloads):
                checker.fail(f"MISMATCH mode={mode}: an extra frame of {len(data)} bytes after {index}", 1)
                return
            expected = checker.payloads[index]
            if data != expected:
                at = next((i for i in range(min(len(data), len(expected))) if data[i] != expected[i]), min(len(data), len(expected)))
                checker.fail(
                    f"MISMATCH mode={mode} frame={index}: expected {len(expected)} bytes, got {len(data)}; first difference at byte {at}",
                    1,
                )
                return
            checker.received += 1
            checker.bytes += len(data)
            if checker.received == len(checker.payloads):
                self.transport.loseConnection()
                reactor.stop()
                return
            self.fill()

        def lengthLimitExceeded(self, length):
            checker = self.checker
            checker.fail(f"MISMATCH mode={mode}: the echo announced {length} bytes, over Twisted's MAX_LENGTH", 1)

        def lineLengthExceeded(self, line):
            self.checker.fail(f"MISMATCH mode={mode}: an echoed line over Twisted's MAX_LENGTH", 1)

        def connectionLost(self, reason):
            checker = self.checker
            if checker.received < len(checker.payloads):
                checker.fail(
                    f"CLOSED mode={mode}: connection lost after {checker.received} of {len(checker.payloads)} frames: {reason.getErrorMessage()}",
                    3,
                )

    setattr(EchoChecker, receive_name, lambda self, data: self.frame(data))
    return EchoChecker


class Factory(protocol.ClientFactory):
    def __init__(self, checker, protocol_class):
        self.checker = checker
        self.protocol = protocol_class

    def clientConnectionFailed(self, connector, reason):
        self.checker.fail(f"CONNECT FAILED: {reason.getErrorMessage()}", 3)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("mode", choices=sorted(LARGEST))
    parser.add_argument("count", type=int)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--window", type=int, default=64)
    try:
        args = parser.parse_args()
    except SystemExit as exit:
        sys.exit(4 if exit.code else 0)
    if args.count < 1 or args.window < 1:
        print("count and window must be positive", file=sys.stderr)
        sys.exit(4)

    rng = random.Random(args.seed)
    checker = Checker(args.mode, make_payloads(args.mode, args.count, rng), args.window)

    def timed_out():
        checker.fail(f"TIMEOUT mode={args.mode}: {checker.received} of {args.count} frames echoed within {args.timeout} s", 2)

    reactor.callLater(args.timeout, timed_out)
    reactor.connectTCP(args.host, args.port, Factory(checker, make_protocol(args.mode)), timeout=10)
    reactor.run()

    if checker.failure is not None:
        print(checker.failure, flush=True)
        sys.exit(checker.exit_code)
    if checker.received != args.count:
        print(f"INCOMPLETE mode={args.mode}: {checker.received} of {args.count} frames", flush=True)
        sys.exit(3)
    elapsed = time.monotonic() - checker.started
    print(f"OK mode={args.mode} frames={checker.received} bytes={checker.bytes} seconds={elapsed:.2f}", flush=True)


if __name__ == "__main__":
    main()
