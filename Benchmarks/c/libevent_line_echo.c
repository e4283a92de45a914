/*
 * libevent_line_echo: the C libevent line-echo reference for issue 3 (framing).
 *
 * A line server written the way libevent is meant to be used: an evconnlistener
 * accepts, each connection gets a socket bufferevent, and the read callback takes the
 * input one line at a time: evbuffer_search_eol(EVBUFFER_EOL_LF) finds the end of the
 * next line, and evbuffer_remove_buffer moves that line and its '\n' to a scratch
 * evbuffer (libevent moves whole chains and copies only partial ones; nothing is
 * formatted per line). At the end of the callback one evbuffer_add_buffer moves the
 * replies to the bufferevent's output, which it writes when the socket is writable.
 * The listener, signals, main, the scratch buffer and backpressure are in
 * libevent_server.h.
 *
 * It is as safe as the Swift framed echo it is measured against:
 * - a line longer than MAX_LINE bytes (64 KiB, without its '\n') closes that
 *   connection, whether the '\n' came or not, so a peer cannot grow the input buffer
 *   past about MAX_LINE + one read;
 * - backpressure: once more than OUTPUT_HIGH bytes of replies wait for a peer that does
 *   not read, the connection stops reading; it reads again when the output has drained
 *   below OUTPUT_LOW (the write callback, through the write low watermark). The same
 *   64 KiB / 32 KiB watermarks as reactor's ConnectionOptions.
 *
 * Usage: libevent_line_echo HOST PORT      (PORT 0 picks a free port)
 * Prints "listening tcp HOST:PORT libevent-line-echo" once ready; exits 0 on
 * SIGINT/SIGTERM.
 */
#include "libevent_server.h"

#define MAX_LINE (64 * 1024) /* longest line accepted, '\n' not counted */

static void read_cb(struct bufferevent *bev, void *ctx) {
    (void)ctx;
    struct evbuffer *input = bufferevent_get_input(bev);
    struct evbuffer *output = bufferevent_get_output(bev);
    for (;;) {
        size_t eol_len;
        struct evbuffer_ptr eol = evbuffer_search_eol(input, NULL, &eol_len, EVBUFFER_EOL_LF);
        if (eol.pos < 0) {
            /* No whole line: what is buffered is the start of one. */
            if (evbuffer_get_length(input) > MAX_LINE) {
                close_conn(bev, "line too long: no '\\n' within 65536 bytes");
                return;
            }
            break;
        }
        if ((size_t)eol.pos > MAX_LINE) {
            close_conn(bev, "line too long");
            return;
        }
        /* This line and its '\n', from the input to the replies. */
        if (evbuffer_remove_buffer(input, scratch, (size_t)eol.pos + eol_len) < 0) {
            close_conn(bev, "evbuffer_remove_buffer failed");
            return;
        }
    }
    if (send_replies(bev, output) < 0) return;
    apply_backpressure(bev, output);
}

int main(int argc, char **argv) {
    static const struct libevent_server line_echo = {
        .name = "libevent_line_echo",
        .listening_name = "libevent-line-echo",
        .read_cb = read_cb,
        .framed = 1,
        .min_frame = 1, /* a '\n' */
    };
    return libevent_server_main(argc, argv, &line_echo);
}

