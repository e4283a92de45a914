"""Talks to the built examples as a client would: python3 smoke.py BIN_DIR.

Each server is started on port 0, its `listening` lines read, its protocol exercised over
real sockets, then it is sent SIGTERM and must exit 0. Every wait is bounded."""

import re
import signal
import socket
import subprocess
import sys
import time


def start(binary):
    server = subprocess.Popen([binary, "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    addresses = {}
    wanted = 2 if binary.endswith("KeyValue") else 1
    signal.alarm(30)  # a server that never says where it listens fails the run, not hangs it
    while len(addresses) < wanted:
        line = server.stdout.readline()
        match = re.match(r"listening (tcp|udp) 127\.0\.0\.1:(\d+)", line)
        if match:
            addresses[match.group(1)] = int(match.group(2))
        elif not line:
            break
    signal.alarm(0)
    if "tcp" not in addresses:
        server.kill()
        raise SystemExit(f"{binary} did not say where it listens: {server.stderr.read()}")
    return server, addresses


def stop(server, name):
    server.terminate()
    try:
        code = server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        raise SystemExit(f"{name} did not stop within 10 s of SIGTERM")
    if code != 0:
        raise SystemExit(f"{name} exited {code} after SIGTERM: {server.stderr.read()}")


class Client:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buffer = b""

    def send(self, line):
        self.sock.sendall(line.encode() + b"\n")

    def line(self):
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise SystemExit(f"connection closed; had {self.buffer!r}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def ask(self, line):
        self.send(line)
        return self.line()


def expect(got, wanted, what):
    if got != wanted:
        raise SystemExit(f"{what}: expected {wanted!r}, got {got!r}")
    print(f"ok  {what}: {got}")


def key_value(binary):
    server, ports = start(binary)
    try:
        client = Client(ports["tcp"])
        expect(client.ask("SET greeting hello"), "OK", "SET")
        expect(client.ask("GET greeting"), "VALUE hello", "GET")
        expect(client.ask("SET soon gone 1"), "OK", "SET with a 1 s expiry")
        expect(client.ask("GET soon"), "VALUE gone", "GET before the expiry")
        # Pipelined: three commands in one write, three replies in order.
        client.sock.sendall(b"DEL greeting\nGET greeting\nFLY away\n")
        expect(client.line(), "DELETED", "DEL")
        expect(client.line(), "NOT_FOUND", "GET after DEL")
        expect(client.line().startswith("ERROR"), True, "an unknown command is an error reply")
        deadline = time.monotonic() + 10
        while client.ask("GET soon") != "NOT_FOUND":
            if time.monotonic() > deadline:
                raise SystemExit("the key did not expire within 10 s")
            time.sleep(0.2)
        print("ok  the key expired on its timer")
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.settimeout(5)
        udp.sendto(b"stats", ("127.0.0.1", ports["udp"]))
        stats = dict(field.split("=") for field in udp.recv(2048).decode().split())
        expect((stats["keys"], stats["expired"], stats["connections"]), ("0", "1", "1"), "UDP stats")
    finally:
        stop(server, "KeyValue")


def chat(binary):
    server, ports = start(binary)
    try:
        alice, bob = Client(ports["tcp"]), Client(ports["tcp"])
        expect(alice.line().startswith("welcome"), True, "alice is welcomed")
        expect(bob.line().startswith("welcome"), True, "bob is welcomed")
        expect(alice.line().endswith("joined"), True, "alice hears bob join")
        expect(alice.ask("/nick alice"), "* you are alice", "alice names herself")
        expect(bob.line().endswith("is now alice"), True, "bob hears the new name")
        expect(bob.ask("/nick bob"), "* you are bob", "bob names himself")
        expect(alice.line().endswith("is now bob"), True, "alice hears bob's new name")
        alice.send("hello, room")
        expect(bob.line(), "[alice] hello, room", "a line goes to the others")
        expect(bob.ask("/who"), "* here: alice, bob", "/who")
        bob.sock.close()
        expect(alice.line(), "* bob left", "alice hears bob leave")
    finally:
        stop(server, "Chat")


if __name__ == "__main__":
    directory = sys.argv[1]
    key_value(f"{directory}/KeyValue")
    chat(f"{directory}/Chat")
    print("examples: all checks passed")
