"""Twisted echo servers, the Python peers of `reactor bench suite` (issue 5).

Each mode is written the way Twisted's own examples write it, on the epoll reactor:

  raw    Protocol.dataReceived writes the bytes back (TCP)
  line   LineReceiver ("\\n" delimiter): each line goes back with sendLine (TCP)
  int32  Int32StringReceiver (4-byte big-endian length): each string goes back with
         sendString (TCP)
  udp    DatagramProtocol.datagramReceived sends each datagram back to its sender

TCP connections get TCP_NODELAY; the line and int32 modes refuse frames over 64 KiB
(the reactor's framers' limit) by closing the connection, as Twisted does past
MAX_LENGTH. No rate limit or reflection guard on UDP: a benchmark peer, not a service
to expose.

Usage: python3 echo_server.py MODE [--host HOST] [--port PORT | PORT]
  (HOST defaults to 127.0.0.1, PORT to 0, which picks a free port)
Prints "listening tcp|udp HOST:PORT twisted-MODE-echo" once ready; exits 0 on
SIGINT/SIGTERM.
"""

import argparse
import resource
import sys

from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import protocol, reactor  # noqa: E402  (after the reactor is chosen)
from twisted.protocols import basic  # noqa: E402

MAX_FRAME = 64 * 1024


class RawEcho(protocol.Protocol):
    def connectionMade(self):
        self.transport.setTcpNoDelay(True)

    def dataReceived(self, data):
        self.transport.write(data)


class LineEcho(basic.LineReceiver):
    delimiter = b"\n"
    MAX_LENGTH = MAX_FRAME

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)

    def lineReceived(self, line):
        self.sendLine(line)


class Int32Echo(basic.Int32StringReceiver):
    MAX_LENGTH = MAX_FRAME

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)

    def stringReceived(self, string):
        self.sendString(string)


class UDPEcho(protocol.DatagramProtocol):
    def datagramReceived(self, datagram, address):
        self.transport.write(datagram, address)


TCP_PROTOCOLS = {"raw": RawEcho, "line": LineEcho, "int32": Int32Echo}


def main():
    parser = argparse.ArgumentParser(description="Twisted echo server (benchmark peer)")
    parser.add_argument("mode", choices=["raw", "line", "int32", "udp"])
    parser.add_argument("port_arg", nargs="?", type=int, metavar="PORT")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    port = args.port if args.port is not None else (args.port_arg or 0)

    # Many connections (the idle scenario holds thousands) need many descriptors.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    name = f"twisted-{args.mode}-echo"
    if args.mode == "udp":
        port_object = reactor.listenUDP(port, UDPEcho(), interface=args.host, maxPacketSize=65535)
        transport = "udp"
    else:
        factory = protocol.Factory.forProtocol(TCP_PROTOCOLS[args.mode])
        port_object = reactor.listenTCP(port, factory, backlog=1024, interface=args.host)
        transport = "tcp"
    address = port_object.getHost()
    host = f"[{address.host}]" if ":" in address.host else address.host
    print(f"listening {transport} {host}:{address.port} {name}", flush=True)
    # Twisted's own SIGINT/SIGTERM handlers stop the reactor; run() then returns.
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
