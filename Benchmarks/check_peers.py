"""Checks every peer in Benchmarks/peers.txt the way `reactor bench suite` uses it.

For each line: runs its command from the repository root with {port} replaced by 0,
waits for its "listening tcp|udp HOST:PORT NAME" line (udp for the udp scenario, tcp
otherwise), then for each of its scenarios
  - echoes a few messages of that scenario's protocol and compares them byte for byte:
    pingpong, churn, idle: raw bytes (1, 64 and 8000 bytes; churn: 20 connections each
    connect, one request, close; idle: 200 connections open at once, one round trip
    each); lines: "\\n"-terminated lines, several in one write; int32: 4-byte big-endian
    length-prefixed frames, several in one write, one empty; udp: datagrams of 1, 64,
    1400 and 8000 bytes;
  - with --loadgen, drives it for a second with Benchmarks/bin/loadgen in the
    matching mode (which checks every echoed byte too);
and finally sends SIGTERM and expects exit status 0 within 5 s. The command runs as
`sh -c 'exec COMMAND'`, as the suite runs it.

Usage: python3 Benchmarks/check_peers.py [--loadgen] [--only NAME]   (from anywhere)
Needs the peers built: make -C Benchmarks; swift build -c release --package-path
Benchmarks/swift --scratch-path Benchmarks/swift/.build --product nio-echo.
Prints one line per check; exits 1 if any failed.
"""

import argparse
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOADGEN = os.path.join(ROOT, "Benchmarks", "bin", "loadgen")
SCENARIOS = {"pingpong", "lines", "int32", "churn", "idle", "udp"}


def read_peers():
    peers = []
    with open(os.path.join(ROOT, "Benchmarks", "peers.txt")) as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 3 or "{port}" not in fields[2]:
                raise SystemExit(f"peers.txt:{number}: expected NAME<TAB>SCENARIOS<TAB>COMMAND with {{port}}")
            scenarios = fields[1].split(",")
            unknown = set(scenarios) - SCENARIOS
            if unknown:
                raise SystemExit(f"peers.txt:{number}: unknown scenarios {sorted(unknown)}")
            if "udp" in scenarios and len(scenarios) > 1:
                raise SystemExit(f"peers.txt:{number}: udp needs a command of its own (it listens on UDP only)")
            peers.append((fields[0], scenarios, fields[2]))
    return peers


def recv_exactly(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise AssertionError(f"closed after {len(data)} of {count} bytes")
        data += chunk
    return data


def tcp(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(5)
    return sock


def check_raw(port):
    with tcp(port) as sock:
        for size in (1, 64, 8000):
            message = bytes((i * 7 + size) % 256 for i in range(size))
            sock.sendall(message)
            if recv_exactly(sock, size) != message:
                raise AssertionError(f"{size}-byte echo differs")


def check_churn(port):
    for k in range(20):
        with tcp(port) as sock:
            message = bytes([k]) * 64
            sock.sendall(message)
            if recv_exactly(sock, 64) != message:
                raise AssertionError(f"connection {k}: echo differs")


def check_idle(port):
    socks = [tcp(port) for _ in range(200)]
    try:
        for k, sock in enumerate(socks):
            sock.sendall(struct.pack(">I", k) * 4)
        for k, sock in enumerate(socks):
            if recv_exactly(sock, 16) != struct.pack(">I", k) * 4:
                raise AssertionError(f"connection {k}: echo differs")
    finally:
        for sock in socks:
            sock.close()


def check_lines(port):
    lines = [b"one", b"", b"x" * 5000, b"last"]
    wire = b"".join(line + b"\n" for line in lines)
    with tcp(port) as sock:
        sock.sendall(wire)
        if recv_exactly(sock, len(wire)) != wire:
            raise AssertionError("lines differ")


def check_int32(port):
    frames = [b"hello", b"", bytes(range(256)) * 40]
    wire = b"".join(struct.pack(">I", len(frame)) + frame for frame in frames)
    with tcp(port) as sock:
        sock.sendall(wire)
        if recv_exactly(sock, len(wire)) != wire:
            raise AssertionError("frames differ")


def check_udp(port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.connect(("127.0.0.1", port))
        for size in (1, 64, 1400, 8000):
            datagram = bytes((i * 13 + size) % 256 for i in range(size))
            for _ in range(3):  # UDP: allow a loss or two
                sock.send(datagram)
                try:
                    echo = sock.recv(65536)
                    break
                except socket.timeout:
                    continue
            else:
                raise AssertionError(f"no echo of a {size}-byte datagram")
            if echo != datagram:
                raise AssertionError(f"{size}-byte datagram echo differs")


CHECKS = {"pingpong": check_raw, "churn": check_churn, "idle": check_idle,
          "lines": check_lines, "int32": check_int32, "udp": check_udp}

LOADGEN_ARGS = {
    "pingpong": ["pingpong", "--connections", "100", "--size", "64"],
    "lines": ["pipeline", "--connections", "50", "--depth", "64", "--size", "32", "--delimiter", "lf"],
    "int32": ["pipeline", "--connections", "50", "--depth", "64", "--size", "32", "--framing", "int32"],
    "udp": ["udp", "--sockets", "8", "--depth", "16", "--size", "64"],
    "idle": ["idle", "--connections", "1000", "--hold", "0.5"],
}


def loadgen(scenario, port):
    args = LOADGEN_ARGS.get(scenario)
    if args is None:
        return "-"
    timing = [] if scenario == "idle" else ["--duration", "1", "--warmup", "0.3"]
    run = subprocess.run([LOADGEN, *args, "--port", str(port), *timing], capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
        raise AssertionError(f"loadgen {scenario}: {run.stderr.strip()}")
    fields = dict(f.split("=", 1) for f in run.stdout.split() if "=" in f)
    rate = fields.get("rps") or fields.get("lps") or f"open={fields.get('open')}"
    return f"loadgen {args[0]} {rate}/s" if "open=" not in rate else f"loadgen idle {rate}"


def start(command):
    # As the suite does: `sh -c 'exec COMMAND'`, so the signals reach the server itself.
    process = subprocess.Popen("exec " + command.replace("{port}", "0"), shell=True, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 15
    line = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            line = process.stdout.readline()
            if line.startswith(b"listening "):
                return process, line.decode().split()
        if process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"no listening line within 15 s: {process.stderr.read().decode().strip()}")


def stop(process):
    os.killpg(process.pid, signal.SIGTERM)
    try:
        status = process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise AssertionError("did not exit within 5 s of SIGTERM")
    if status != 0:
        raise AssertionError(f"exit status {status} after SIGTERM")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loadgen", action="store_true", help="also drive each scenario for 1 s with loadgen")
    parser.add_argument("--only", help="check only the peer NAME")
    options = parser.parse_args()
    failures = 0
    for name, scenarios, command in read_peers():
        if options.only and name != options.only:
            continue
        try:
            process, words = start(command)
        except AssertionError as error:
            print(f"FAIL {name} {','.join(scenarios)}: {error}")
            failures += 1
            continue
        transport = "udp" if scenarios == ["udp"] else "tcp"
        port = int(words[2].rsplit(":", 1)[1])
        results = []
        try:
            if words[1] != transport:
                raise AssertionError(f"listens on {words[1]}, {transport} expected")
            for scenario in scenarios:
                CHECKS[scenario](port)
                results.append(f"{scenario} ok" + (f" ({loadgen(scenario, port)})" if options.loadgen else ""))
            stop(process)
            print(f"ok   {name} [{words[3]} {words[1]}] " + "; ".join(results) + "; SIGTERM exit 0")
        except (AssertionError, OSError, subprocess.TimeoutExpired) as error:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            print(f"FAIL {name} [{command}]: {'; '.join(results + [str(error)])}")
            failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
