#!/usr/bin/env python3
"""Holds every packet of an NFQUEUE queue for a random delay, then lets it go: netem's
`delay D J` for kernels without netem. Each packet gets its own delay, uniform in
[D - J, D + J], so packets sent close together overtake one another (reordering), as
on a real path with several routes.

    delayq.py QUEUE DELAY_MS JITTER_MS [--seconds S]

Run it inside the namespace whose nftables rules say `queue num QUEUE` (scripts/faults/
faults.sh). It stops by itself after S seconds (default 600) or on SIGTERM; until it has
bound the queue the rules drop what they send there, so start it first. It prints one
line when ready, and at exit the packets held and the delays given (min, median, max).
"""
import heapq
import random
import select
import signal
import sys
import time

from netfilterqueue import COPY_META, NetfilterQueue


def main():
    args = sys.argv[1:]
    seconds = 600.0
    if "--seconds" in args:
        i = args.index("--seconds")
        seconds = float(args[i + 1])
        del args[i : i + 2]
    queue_num, delay_ms, jitter_ms = int(args[0]), float(args[1]), float(args[2])
    low, high = (delay_ms - jitter_ms) / 1000, (delay_ms + jitter_ms) / 1000
    held = []  # (release time, sequence, packet): a heap
    delays = []
    sequence = 0

    def hold(packet):
        nonlocal sequence
        delay = random.uniform(low, high)
        delays.append(delay)
        sequence += 1
        heapq.heappush(held, (time.monotonic() + delay, sequence, packet))

    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    queue = NetfilterQueue()
    # Room for every packet held at once: a full queue makes the kernel drop, which would
    # add loss nobody asked for.
    queue.bind(queue_num, hold, max_len=65536, mode=COPY_META, sock_len=64 << 20)
    fd = queue.get_fd()
    print(f"delayq: queue {queue_num}, delay {delay_ms} ms +- {jitter_ms} ms", flush=True)
    deadline = time.monotonic() + seconds
    try:
        while not stopping and time.monotonic() < deadline:
            now = time.monotonic()
            while held and held[0][0] <= now:
                heapq.heappop(held)[2].accept()
            wait = max(0.0, held[0][0] - now) if held else 0.1
            try:
                ready, _, _ = select.select([fd], [], [], min(wait, 0.1))
            except InterruptedError:
                continue
            if ready:
                queue.run(block=False)
    finally:
        for _, _, packet in held:
            packet.accept()
        queue.unbind()
    delays.sort()
    if delays:
        ms = [round(d * 1000, 1) for d in (delays[0], delays[len(delays) // 2], delays[-1])]
        print(f"delayq: {len(delays)} packets held, delay min/median/max {ms[0]}/{ms[1]}/{ms[2]} ms", flush=True)
    else:
        print("delayq: 0 packets held", flush=True)


if __name__ == "__main__":
    main()
