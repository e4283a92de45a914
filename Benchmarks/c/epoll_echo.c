/*
 * epoll_echo: the reference TCP echo server the Swift reactor is measured against.
 *
 * The fewest syscalls an echo can cost: one thread, level-triggered epoll, one read
 * into a shared 64 KiB buffer per readiness event, then an immediate send from that
 * same buffer. Only the bytes the kernel did not take are copied into a per-connection
 * queue; only then is EPOLLOUT armed (and EPOLLIN dropped, so a peer that does not
 * read its replies cannot grow our memory). When the queue drains we go back to
 * EPOLLIN. A small echo therefore costs read + send, plus a share of one epoll_wait.
 *
 * Usage: epoll_echo HOST PORT      (PORT 0 picks a free port)
 * Prints "listening tcp HOST:PORT epoll-echo" once ready; exits 0 on SIGINT/SIGTERM.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server_common.h"

#define READ_BUFFER_SIZE (64 * 1024)
#define MAX_EVENTS 256

/* Bytes owed to a peer that the kernel did not take. Indexed by fd, as in redis' ae.c:
 * an idle connection costs just this struct and no heap. */
struct conn {
    char *pending;
    size_t offset, length;
};

static struct conn *conns;
static size_t max_fds;
static int epfd;
static int spare_fd = -1; /* reserve fd, closed to shed connections on EMFILE */
static char buffer[READ_BUFFER_SIZE];

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void set_interest(int fd, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) != 0) die("epoll_ctl(MOD)");
}

static void close_conn(int fd) {
    free(conns[fd].pending);
    conns[fd] = (struct conn){0};
    close(fd); /* also removes fd from the epoll set */
}

/* Sends what is queued; back to reading once it is all gone. */
static void on_writable(int fd) {
    struct conn *c = &conns[fd];
    ssize_t n = send(fd, c->pending + c->offset, c->length - c->offset, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) close_conn(fd);
        return;
    }
    c->offset += (size_t)n;
    if (c->offset == c->length) {
        free(c->pending);
        c->pending = NULL;
        c->offset = c->length = 0;
        set_interest(fd, EPOLLIN);
    }
}

static void on_readable(int fd) {
    /* One read per event: with level-triggering, reading again until EAGAIN would
     * only add a syscall that returns nothing. */
    ssize_t n = read(fd, buffer, sizeof buffer);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) close_conn(fd);
        return;
    }
    ssize_t sent = send(fd, buffer, (size_t)n, MSG_NOSIGNAL);
    if (sent == n) return;
    if (sent < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            close_conn(fd);
            return;
        }
        sent = 0;
    }
    /* The kernel is full: keep the rest and wait for EPOLLOUT, reading nothing more
     * from this peer until it drains (backpressure, bounded at one read per conn). */
    struct conn *c = &conns[fd];
    c->length = (size_t)(n - sent);
    c->offset = 0;
    c->pending = malloc(c->length);
    if (!c->pending) {
        close_conn(fd);
        return;
    }
    memcpy(c->pending, buffer + sent, c->length);
    set_interest(fd, EPOLLOUT);
}

static void on_acceptable(int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                /* Level-triggered epoll would report the listener again at once and
                 * spin: free the reserve fd, accept and drop one peer, re-reserve. */
                if (spare_fd >= 0) {
                    close(spare_fd);
                    int victim = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                    if (victim >= 0) close(victim);
                    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                }
                return;
            }
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return; /* EAGAIN: backlog empty */
        }
        if ((size_t)fd >= max_fds) { /* cannot happen below RLIMIT_NOFILE; be safe */
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) close(fd);
    }
}

static int listen_on(const char *host, const char *port) {
    struct addrinfo *list = resolve_listen_address("epoll_echo", host, port, SOCK_STREAM);
    if (!list) exit(1);
    int fd = -1;
    for (struct addrinfo *ai = list; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(list);
    if (fd < 0) die("bind/listen");
    return fd;
}

int main(int argc, char **argv) {
    if (!usage_ok(argc, argv)) return 2;
    rlim_t limit = raise_fd_limit();
    max_fds = limit == RLIM_INFINITY || limit == 0 ? 1u << 20 : (size_t)limit;
    conns = calloc(max_fds, sizeof *conns); /* untouched pages cost no memory */
    if (!conns) die("calloc");

    /* Signals arrive as a readable fd, so shutdown is just another event. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0) die("signalfd");
    signal(SIGPIPE, SIG_IGN);

    int lfd = listen_on(argv[1], argv[2]);
    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) != 0) die("epoll_ctl(listener)");
    ev.data.fd = sfd;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &ev) != 0) die("epoll_ctl(signalfd)");

    if (print_listening(lfd, "epoll-echo") != 0) die("getsockname");

    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            uint32_t what = events[i].events;
            if (fd == lfd) {
                on_acceptable(lfd);
            } else if (fd == sfd) {
                return 0; /* the kernel closes every socket on exit */
            } else if (what & EPOLLOUT) {
                on_writable(fd);
            } else if (what & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                /* HUP/ERR: the read reports EOF or the error and closes. */
                on_readable(fd);
            }
        }
    }
}
