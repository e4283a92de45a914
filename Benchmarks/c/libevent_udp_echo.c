/*
 * libevent_udp_echo: the C libevent UDP echo that `reactor serve echo --udp-only` is
 * measured against (issue 4).
 *
 * A UDP echo written the plain libevent way: one non-blocking datagram socket, one
 * event on it (EV_READ|EV_PERSIST), and a callback that loops recvfrom into one 64 KiB
 * buffer and sendto straight back to the sender until recvfrom says EAGAIN. One
 * recvfrom and one sendto per datagram, no batching (no recvmmsg/sendmmsg), no
 * per-source rate limit and no reflection guard: the yardstick, not a service to
 * expose. A datagram the kernel will not take at once (sendto fails, e.g. EAGAIN on a
 * full send buffer) is dropped, as UDP allows; a datagram longer than the buffer
 * arrives cut to 64 KiB (it cannot be bigger over IPv4 or IPv6 without jumbograms).
 *
 * Usage: libevent_udp_echo HOST PORT      (PORT 0 picks a free port)
 * Prints "listening udp HOST:PORT libevent-udp-echo" once ready; exits 0 on
 * SIGINT/SIGTERM.
 */
#include <event2/event.h>
#include <event2/util.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server_common.h"

#define BUFFER_SIZE (64 * 1024)

static char buffer[BUFFER_SIZE];

/* Readable: echo every datagram waiting, each to the address it came from. */
static void read_cb(evutil_socket_t fd, short events, void *ctx) {
    (void)events, (void)ctx;
    for (;;) {
        struct sockaddr_storage from;
        socklen_t from_len = sizeof from;
        ssize_t n = recvfrom(fd, buffer, sizeof buffer, 0, (struct sockaddr *)&from, &from_len);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                fprintf(stderr, "libevent_udp_echo: recvfrom: %s\n", strerror(errno));
            return;
        }
        sendto(fd, buffer, (size_t)n, 0, (struct sockaddr *)&from, from_len);
    }
}

static void signal_cb(evutil_socket_t sig, short events, void *base) {
    (void)sig, (void)events;
    event_base_loopbreak(base);
}

int main(int argc, char **argv) {
    if (!usage_ok(argc, argv)) return 2;
    struct addrinfo *list = resolve_listen_address("libevent_udp_echo", argv[1], argv[2], SOCK_DGRAM);
    if (!list) return 1;
    evutil_socket_t fd = -1;
    for (struct addrinfo *ai = list; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd >= 0 && bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(list);
    if (fd < 0) {
        fprintf(stderr, "libevent_udp_echo: bind: %s\n", strerror(errno));
        return 1;
    }

    struct event_base *base = event_base_new();
    if (!base) {
        fprintf(stderr, "libevent_udp_echo: event_base_new failed\n");
        return 1;
    }
    struct event *readable = event_new(base, fd, EV_READ | EV_PERSIST, read_cb, NULL);
    struct event *sigint = evsignal_new(base, SIGINT, signal_cb, base);
    struct event *sigterm = evsignal_new(base, SIGTERM, signal_cb, base);
    event_add(readable, NULL);
    event_add(sigint, NULL);
    event_add(sigterm, NULL);

    print_listening(fd, "libevent-udp-echo");

    event_base_dispatch(base);

    event_free(readable);
    event_free(sigint);
    event_free(sigterm);
    event_base_free(base);
    close(fd);
    return 0;
}
