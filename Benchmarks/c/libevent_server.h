/*
 * libevent_server.h: the scaffolding the libevent reference servers share, so that each
 * server file is its protocol and a call to libevent_server_main():
 *
 * - an evconnlistener accepts; each connection gets TCP_NODELAY and a socket
 *   bufferevent that owns (and closes) the fd, with the server's read callback;
 *   end of file or an error frees the bufferevent;
 * - SIGINT/SIGTERM break the loop, everything is freed and main returns 0; SIGPIPE is
 *   ignored; "listening tcp HOST:PORT NAME" is printed once ready.
 *
 * For the framed servers (line, int32), what they do alike around their framing:
 *
 * - the replies to one read callback's frames are gathered in one scratch evbuffer and
 *   moved to the output with one evbuffer_add_buffer at the end of the callback
 *   (send_replies). Adding each frame to the bufferevent's output directly would run
 *   the output's callbacks (bufferevent_socket_outbuf_cb, event_pending) once per
 *   frame; the scratch buffer has none. One for the whole server: it is
 *   single-threaded and the buffer is empty between callbacks;
 * - backpressure: once more than OUTPUT_HIGH bytes of replies wait for a peer that does
 *   not read, the connection stops reading (apply_backpressure); it reads again when
 *   the output has drained below OUTPUT_LOW (framed_write_cb, through the write low
 *   watermark). The same 64 KiB / 32 KiB watermarks as reactor's ConnectionOptions;
 * - a connection that breaks the protocol is closed with one line on stderr
 *   (close_conn).
 *
 * Static functions, included by one .c file each, so the compiler sees each server
 * whole, as when each was one file.
 */
#ifndef LIBEVENT_SERVER_H
#define LIBEVENT_SERVER_H

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "server_common.h"

#define OUTPUT_HIGH (64 * 1024)  /* framed: stop reading when this much output waits */
#define OUTPUT_LOW (32 * 1024)   /* framed: read again once the output is below this */

/* What makes one server. */
struct libevent_server {
    const char *name;            /* the program, for messages on stderr */
    const char *listening_name;  /* NAME in the listening line */
    bufferevent_data_cb read_cb;
    size_t read_low_watermark;   /* set on every new bufferevent when not 0 */
    int framed;                  /* the framed servers' scratch buffer and backpressure */
    size_t min_frame;            /* framed: the fewest buffered bytes that can hold a frame */
};

static const struct libevent_server *server;

/* Framed servers: the replies of the current read callback. */
static struct evbuffer *scratch;

/* Closes a framed connection that broke the protocol, saying why with the peer's
 * address, and drops the replies gathered for it. */
__attribute__((unused)) static void close_conn(struct bufferevent *bev, const char *why) {
    evutil_socket_t fd = bufferevent_getfd(bev);
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";
    if (getpeername(fd, (struct sockaddr *)&addr, &len) == 0)
        getnameinfo((struct sockaddr *)&addr, len, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV);
    fprintf(stderr, "%s: %s:%s: %s; closing the connection\n", server->name, host, port, why);
    evbuffer_drain(scratch, evbuffer_get_length(scratch)); /* replies owed to it */
    bufferevent_free(bev); /* BEV_OPT_CLOSE_ON_FREE: closes the socket */
}

/* Moves all the replies of this read callback to `output` at once (moves the chains,
 * copies nothing). 0, or -1 once the connection is closed. */
__attribute__((unused)) static int send_replies(struct bufferevent *bev, struct evbuffer *output) {
    if (evbuffer_add_buffer(output, scratch) < 0) {
        close_conn(bev, "evbuffer_add_buffer failed");
        return -1;
    }
    return 0;
}

/* At the end of a read callback: if the peer is not reading its replies, stop reading
 * until they drain below OUTPUT_LOW. */
__attribute__((unused)) static void apply_backpressure(struct bufferevent *bev, struct evbuffer *output) {
    if (evbuffer_get_length(output) > OUTPUT_HIGH) {
        bufferevent_disable(bev, EV_READ);
        bufferevent_setwatermark(bev, EV_WRITE, OUTPUT_LOW, 0);
    }
}

/* Framed servers: runs when the output drains to the write low watermark (0, i.e.
 * empty, unless reading was stopped for backpressure). */
static void framed_write_cb(struct bufferevent *bev, void *ctx) {
    if (!(bufferevent_get_enabled(bev) & EV_READ)) {
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
        bufferevent_enable(bev, EV_READ);
        /* Frames that were already buffered when reading stopped. */
        if (evbuffer_get_length(bufferevent_get_input(bev)) >= server->min_frame) server->read_cb(bev, ctx);
    }
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
    bufferevent_setcb(bev, server->read_cb, server->framed ? framed_write_cb : NULL, event_cb, NULL);
    if (server->read_low_watermark) bufferevent_setwatermark(bev, EV_READ, server->read_low_watermark, 0);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void accept_error_cb(struct evconnlistener *listener, void *ctx) {
    (void)listener, (void)ctx;
    int err = EVUTIL_SOCKET_ERROR();
    fprintf(stderr, "%s: accept: %s\n", server->name, evutil_socket_error_to_string(err));
}

static void signal_cb(evutil_socket_t sig, short events, void *base) {
    (void)sig, (void)events;
    event_base_loopbreak(base);
}

/* The whole program around `config`'s callbacks: `PROGRAM HOST PORT`. Returns the exit
 * status: 0 after SIGINT/SIGTERM, 1 when it cannot listen, 2 on a bad command line. */
static int libevent_server_main(int argc, char **argv, const struct libevent_server *config) {
    if (!usage_ok(argc, argv)) return 2;
    server = config;
    raise_fd_limit();

    struct addrinfo *ai = resolve_listen_address(config->name, argv[1], argv[2], SOCK_STREAM);
    if (!ai) return 1;

    struct event_base *base = event_base_new();
    if (config->framed) scratch = evbuffer_new();
    if (!base || (config->framed && !scratch)) {
        fprintf(stderr, "%s: event_base_new failed\n", config->name);
        return 1;
    }
    struct evconnlistener *listener = evconnlistener_new_bind(
        base, accept_cb, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
        ai->ai_addr, (int)ai->ai_addrlen);
    freeaddrinfo(ai);
    if (!listener) {
        int err = errno;
        fprintf(stderr, "%s: bind/listen: %s\n", config->name, strerror(err));
        return 1;
    }
    evconnlistener_set_error_cb(listener, accept_error_cb);

    struct event *sigint = evsignal_new(base, SIGINT, signal_cb, base);
    struct event *sigterm = evsignal_new(base, SIGTERM, signal_cb, base);
    event_add(sigint, NULL);
    event_add(sigterm, NULL);
    signal(SIGPIPE, SIG_IGN);

    print_listening(evconnlistener_get_fd(listener), config->listening_name);

    event_base_dispatch(base);

    event_free(sigint);
    event_free(sigterm);
    evconnlistener_free(listener);
    if (scratch) evbuffer_free(scratch);
    event_base_free(base);
    return 0;
}

#endif
