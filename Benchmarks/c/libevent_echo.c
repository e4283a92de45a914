/*
 * libevent_echo: the canonical libevent bufferevent echo server, as in the libevent
 * book and sample/ directory: an evconnlistener accepts, each connection gets a socket
 * bufferevent that owns (and closes) the fd, and the read callback moves the input
 * buffer to the output buffer. This is the "C libevent (bufferevent)" yardstick; it is
 * deliberately written the ordinary way, not tuned.
 *
 * Usage: libevent_echo HOST PORT      (PORT 0 picks a free port)
 * Prints "listening tcp HOST:PORT libevent-echo" once ready; exits 0 on SIGINT/SIGTERM.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

static void read_cb(struct bufferevent *bev, void *ctx) {
    (void)ctx;
    /* Moves the chain of chunks without copying the bytes. */
    evbuffer_add_buffer(bufferevent_get_output(bev), bufferevent_get_input(bev));
}

static void event_cb(struct bufferevent *bev, short events, void *ctx) {
    (void)ctx;
    if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) bufferevent_free(bev); /* closes fd */
}

static void accept_cb(struct evconnlistener *listener, evutil_socket_t fd,
                      struct sockaddr *addr, int socklen, void *ctx) {
    (void)addr, (void)socklen, (void)ctx;
    struct event_base *base = evconnlistener_get_base(listener);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        evutil_closesocket(fd);
        return;
    }
    bufferevent_setcb(bev, read_cb, NULL, event_cb, NULL);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void accept_error_cb(struct evconnlistener *listener, void *ctx) {
    (void)listener, (void)ctx;
    int err = EVUTIL_SOCKET_ERROR();
    fprintf(stderr, "libevent_echo: accept: %s\n", evutil_socket_error_to_string(err));
}

static void signal_cb(evutil_socket_t sig, short events, void *base) {
    (void)sig, (void)events;
    event_base_loopbreak(base);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s HOST PORT\n", argv[0]);
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai;
    int rc = getaddrinfo(argv[1], argv[2], &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "libevent_echo: cannot resolve %s: %s\n", argv[1], gai_strerror(rc));
        return 1;
    }

    struct event_base *base = event_base_new();
    if (!base) {
        fprintf(stderr, "libevent_echo: event_base_new failed\n");
        return 1;
    }
    struct evconnlistener *listener = evconnlistener_new_bind(
        base, accept_cb, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
        ai->ai_addr, (int)ai->ai_addrlen);
    freeaddrinfo(ai);
    if (!listener) {
        perror("libevent_echo: bind/listen");
        return 1;
    }
    evconnlistener_set_error_cb(listener, accept_error_cb);

    struct event *sigint = evsignal_new(base, SIGINT, signal_cb, base);
    struct event *sigterm = evsignal_new(base, SIGTERM, signal_cb, base);
    event_add(sigint, NULL);
    event_add(sigterm, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    char host[NI_MAXHOST], port[NI_MAXSERV];
    getsockname(evconnlistener_get_fd(listener), (struct sockaddr *)&addr, &len);
    getnameinfo((struct sockaddr *)&addr, len, host, sizeof host, port, sizeof port,
                NI_NUMERICHOST | NI_NUMERICSERV);
    printf(addr.ss_family == AF_INET6 ? "listening tcp [%s]:%s libevent-echo\n"
                                      : "listening tcp %s:%s libevent-echo\n",
           host, port);
    fflush(stdout);

    event_base_dispatch(base);

    event_free(sigint);
    event_free(sigterm);
    evconnlistener_free(listener);
    event_base_free(base);
    return 0;
}
