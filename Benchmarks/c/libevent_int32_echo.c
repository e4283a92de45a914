/*
 * libevent_int32_echo: the C libevent length-prefix echo reference for issue 3 (framing).
 *
 * Frames are a 4-byte big-endian payload length, then the payload (Twisted's
 * Int32StringReceiver, reactor's `--framing int32`). Written the way libevent is meant
 * to be used: an evconnlistener accepts, each connection gets a socket bufferevent, and
 * the read callback takes one frame at a time: evbuffer_copyout reads the header
 * without draining it, the length is checked against MAX_FRAME, and once the whole
 * frame is buffered evbuffer_remove_buffer moves header and payload to a scratch
 * evbuffer (the echoed header is the same 4 bytes; libevent moves whole chains and
 * copies only partial ones). At the end of the callback one evbuffer_add_buffer moves
 * the replies to the bufferevent's output, which it writes when the socket is writable.
 *
 * It is as safe as the Swift framed echo it is measured against:
 * - a length over MAX_FRAME (64 KiB) closes that connection as soon as the header
 *   arrives, without waiting for the payload;
 * - while a frame is incomplete, the read low watermark is set to its full size, so
 *   the read callback does not run (and re-parse the header) for every partial read;
 * - backpressure: once more than OUTPUT_HIGH bytes of replies wait for a peer that does
 *   not read, the connection stops reading; it reads again when the output has drained
 *   below OUTPUT_LOW (the write callback, through the write low watermark). The same
 *   64 KiB / 32 KiB watermarks as reactor's ConnectionOptions.
 *
 * Usage: libevent_int32_echo HOST PORT      (PORT 0 picks a free port)
 * Prints "listening tcp HOST:PORT libevent-int32-echo" once ready; exits 0 on
 * SIGINT/SIGTERM.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#define HEADER 4                 /* big-endian payload length */
#define MAX_FRAME (64 * 1024)    /* longest payload accepted */
#define OUTPUT_HIGH (64 * 1024)  /* stop reading when this much output waits */
#define OUTPUT_LOW (32 * 1024)   /* read again once the output is below this */

/* The replies to one read callback's frames, moved to the output in one
 * evbuffer_add_buffer at the end of the callback. Adding each frame to the bufferevent's
 * output directly would run the output's callbacks (bufferevent_socket_outbuf_cb,
 * event_pending) once per frame; the scratch buffer has none. One for the whole server:
 * it is single-threaded and the buffer is empty between callbacks. */
static struct evbuffer *scratch;

static void close_conn(struct bufferevent *bev, const char *why) {
    evutil_socket_t fd = bufferevent_getfd(bev);
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";
    if (getpeername(fd, (struct sockaddr *)&addr, &len) == 0)
        getnameinfo((struct sockaddr *)&addr, len, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV);
    fprintf(stderr, "libevent_int32_echo: %s:%s: %s; closing the connection\n", host, port, why);
    evbuffer_drain(scratch, evbuffer_get_length(scratch)); /* replies owed to it */
    bufferevent_free(bev); /* BEV_OPT_CLOSE_ON_FREE: closes the socket */
}

static void read_cb(struct bufferevent *bev, void *ctx) {
    (void)ctx;
    struct evbuffer *input = bufferevent_get_input(bev);
    struct evbuffer *output = bufferevent_get_output(bev);
    size_t buffered = evbuffer_get_length(input);
    size_t missing = 0;
    while (buffered >= HEADER) {
        uint32_t be;
        evbuffer_copyout(input, &be, HEADER);
        uint32_t length = ntohl(be);
        if (length > MAX_FRAME) {
            close_conn(bev, "frame too long");
            return;
        }
        size_t frame = HEADER + (size_t)length;
        if (buffered < frame) {
            missing = frame;
            break;
        }
        /* Header and payload, from the input to the replies. */
        if (evbuffer_remove_buffer(input, scratch, frame) < 0) {
            close_conn(bev, "evbuffer_remove_buffer failed");
            return;
        }
        buffered -= frame;
    }
    /* All the replies of this read at once (moves the chains, copies nothing). */
    if (evbuffer_add_buffer(output, scratch) < 0) {
        close_conn(bev, "evbuffer_add_buffer failed");
        return;
    }
    /* Wake up again only when the frame (or at least its header) is complete. The
     * bufferevent does not call the read callback below the low watermark. */
    size_t low = missing ? missing : HEADER, current;
    bufferevent_getwatermark(bev, EV_READ, &current, NULL);
    if (current != low) bufferevent_setwatermark(bev, EV_READ, low, 0);
    if (evbuffer_get_length(output) > OUTPUT_HIGH) {
        /* The peer is not reading its replies: stop reading until they drain. */
        bufferevent_disable(bev, EV_READ);
        bufferevent_setwatermark(bev, EV_WRITE, OUTPUT_LOW, 0);
    }
}

/* Runs when the output drains to the write low watermark (0, i.e. empty, unless
 * reading was stopped for backpressure). */
static void write_cb(struct bufferevent *bev, void *ctx) {
    (void)ctx;
    if (!(bufferevent_get_enabled(bev) & EV_READ)) {
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
        bufferevent_enable(bev, EV_READ);
        /* Frames that were already buffered when reading stopped. */
        if (evbuffer_get_length(bufferevent_get_input(bev)) >= HEADER) read_cb(bev, ctx);
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
    bufferevent_setcb(bev, read_cb, write_cb, event_cb, NULL);
    bufferevent_setwatermark(bev, EV_READ, HEADER, 0);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void accept_error_cb(struct evconnlistener *listener, void *ctx) {
    (void)listener, (void)ctx;
    int err = EVUTIL_SOCKET_ERROR();
    fprintf(stderr, "libevent_int32_echo: accept: %s\n", evutil_socket_error_to_string(err));
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
        fprintf(stderr, "libevent_int32_echo: cannot resolve %s: %s\n", argv[1], gai_strerror(rc));
        return 1;
    }

    struct event_base *base = event_base_new();
    scratch = evbuffer_new();
    if (!base || !scratch) {
        fprintf(stderr, "libevent_int32_echo: event_base_new failed\n");
        return 1;
    }
    struct evconnlistener *listener = evconnlistener_new_bind(
        base, accept_cb, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
        ai->ai_addr, (int)ai->ai_addrlen);
    freeaddrinfo(ai);
    if (!listener) {
        perror("libevent_int32_echo: bind/listen");
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
    printf(addr.ss_family == AF_INET6 ? "listening tcp [%s]:%s libevent-int32-echo\n"
                                      : "listening tcp %s:%s libevent-int32-echo\n",
           host, port);
    fflush(stdout);

    event_base_dispatch(base);

    event_free(sigint);
    event_free(sigterm);
    evconnlistener_free(listener);
    evbuffer_free(scratch);
    event_base_free(base);
    return 0;
}
