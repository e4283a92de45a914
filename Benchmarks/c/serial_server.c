/*
 * serial_server: a line echo of known capacity, for measuring `reactor bench --slo`
 * (Benchmarks/slo-bench.sh). Requests from every connection wait in one queue and are
 * served one at a time, in order, each taking SERVICE_US microseconds (default 1000), so
 * the server answers at most 1e6 / SERVICE_US requests per second whatever the load.
 *
 *   serial_server HOST PORT [SERVICE_US]
 *
 * The service is timed on an absolute schedule, as the tests' withSerialServer
 * (Tests/ReactorTestSupport/SerialServer.swift) is: a request starts when it arrived or when
 * the one before it was due to end, whichever is later, and its answer leaves when it is
 * due (a timerfd armed at that time). A late wake-up delays answers but never lowers the
 * capacity, and nothing spins. Lines longer than 255 bytes are cut; an answer the socket
 * cannot take at once is dropped (a bench client reads as fast as one request a
 * millisecond arrives).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "server_common.h"

#define MAX_FDS 4096
#define LINE_MAX_BYTES 256
#define QUEUE_SIZE 65536

struct connection {
    char input[4096];
    size_t length;
    uint32_t generation; /* bumped on close: queued requests of a closed connection are dropped */
    int open;
};

struct request {
    int fd;
    uint32_t generation;
    uint64_t arrived;
    uint16_t length;
    char line[LINE_MAX_BYTES];
};

static struct connection connections[MAX_FDS];
static struct request queue[QUEUE_SIZE];
static size_t head, tail; /* queue[head..tail) waits; the head is in service */
static uint64_t service_ns, busy_until;
static int serving, timer_fd;

/* SIGTERM and SIGINT end the server with status 0: the benchmark scripts stop it so. */
static void stop(int signal_number) {
    (void)signal_number;
    _exit(0);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void arm_timer(uint64_t at) {
    struct itimerspec spec = {.it_value = {.tv_sec = (time_t)(at / 1000000000u), .tv_nsec = (long)(at % 1000000000u)}};
    timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &spec, NULL);
}

/* Starts serving the head of the queue, if any. */
static void start_next(void) {
    if (head == tail) {
        serving = 0;
        return;
    }
    serving = 1;
    uint64_t start = queue[head % QUEUE_SIZE].arrived > busy_until ? queue[head % QUEUE_SIZE].arrived : busy_until;
    busy_until = start + service_ns;
}

/* Answers every request whose service has ended by now, then waits for the next. */
static void serve_due(void) {
    uint64_t now = now_ns();
    while (serving && busy_until <= now) {
        struct request *request = &queue[head % QUEUE_SIZE];
        if (connections[request->fd].open && connections[request->fd].generation == request->generation) {
            request->line[request->length] = '\n';
            send(request->fd, request->line, request->length + 1u, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        head++;
        start_next();
    }
    if (serving) arm_timer(busy_until);
}

static void enqueue(int fd, const char *line, size_t length) {
    if (tail - head >= QUEUE_SIZE) return; /* a full queue sheds the request: the client times it out */
    struct request *request = &queue[tail % QUEUE_SIZE];
    request->fd = fd;
    request->generation = connections[fd].generation;
    request->arrived = now_ns();
    request->length = (uint16_t)(length < LINE_MAX_BYTES - 1 ? length : LINE_MAX_BYTES - 1);
    memcpy(request->line, line, request->length);
    tail++;
    if (!serving) {
        start_next();
        serve_due();
    }
}

static void close_connection(int epoll_fd, int fd) {
    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    connections[fd].open = 0;
    connections[fd].length = 0;
    connections[fd].generation++;
}

static void readable(int epoll_fd, int fd) {
    struct connection *connection = &connections[fd];
    for (;;) {
        ssize_t got = read(fd, connection->input + connection->length, sizeof connection->input - connection->length);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
            close_connection(epoll_fd, fd);
            return;
        }
        if (got < 0) return;
        connection->length += (size_t)got;
        size_t start = 0;
        for (size_t i = 0; i < connection->length; i++) {
            if (connection->input[i] != '\n') continue;
            enqueue(fd, connection->input + start, i - start);
            start = i + 1;
        }
        if (start == 0 && connection->length == sizeof connection->input) start = connection->length; /* no newline in 4 KiB: drop it */
        memmove(connection->input, connection->input + start, connection->length - start);
        connection->length -= start;
    }
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s HOST PORT [SERVICE_US]\n", argv[0]);
        return 2;
    }
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    signal(SIGPIPE, SIG_IGN);
    service_ns = (argc == 4 ? strtoull(argv[3], NULL, 10) : 1000u) * 1000u;
    if (service_ns == 0) {
        fprintf(stderr, "serial_server: SERVICE_US must be positive\n");
        return 2;
    }
    struct addrinfo *address = resolve_listen_address("serial_server", argv[1], argv[2], SOCK_STREAM);
    if (!address) return 1;
    int listener = socket(address->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (listener < 0 || bind(listener, address->ai_addr, address->ai_addrlen) != 0 || listen(listener, 1024) != 0) {
        perror("serial_server: listen");
        return 1;
    }
    freeaddrinfo(address);
    int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct epoll_event event = {.events = EPOLLIN, .data.fd = listener};
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listener, &event);
    event.data.fd = timer_fd;
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, timer_fd, &event);
    if (print_listening(listener, "serial") != 0) return 1;

    struct epoll_event events[64];
    for (;;) {
        int ready = epoll_wait(epoll_fd, events, 64, -1);
        for (int i = 0; i < ready; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int client;
                while ((client = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (client >= MAX_FDS) {
                        close(client);
                        continue;
                    }
                    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    connections[client].open = 1;
                    connections[client].length = 0;
                    struct epoll_event client_event = {.events = EPOLLIN, .data.fd = client};
                    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, client, &client_event);
                }
            } else if (fd == timer_fd) {
                uint64_t expirations;
                (void)!read(timer_fd, &expirations, sizeof expirations);
                serve_due();
            } else {
                readable(epoll_fd, fd);
            }
        }
    }
}
