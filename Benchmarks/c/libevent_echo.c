/*
 * libevent_echo: the canonical libevent bufferevent echo server, as in the libevent
 * book and sample/ directory: an evconnlistener accepts, each connection gets a socket
 * bufferevent that owns (and closes) the fd, and the read callback moves the input
 * buffer to the output buffer. This is the "C libevent (bufferevent)" yardstick; it is
 * deliberately written the ordinary way, not tuned. The listener, signals and main
 * are in libevent_server.h.
 *
 * Usage: libevent_echo HOST PORT      (PORT 0 picks a free port)
 * Prints "listening tcp HOST:PORT libevent-echo" once ready; exits 0 on SIGINT/SIGTERM.
 */
#include "libevent_server.h"

static void read_cb(struct bufferevent *bev, void *ctx) {
    (void)ctx;
    /* Moves the chain of chunks without copying the bytes. */
    evbuffer_add_buffer(bufferevent_get_output(bev), bufferevent_get_input(bev));
}

int main(int argc, char **argv) {
    static const struct libevent_server echo = {
        .name = "libevent_echo",
        .listening_name = "libevent-echo",
        .read_cb = read_cb,
    };
    return libevent_server_main(argc, argv, &echo);
}
