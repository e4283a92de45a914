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
 * The listener, signals, main, the scratch buffer and backpressure are in
 * libevent_server.h.
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
#include "libevent_server.h"

#include <arpa/inet.h>
#include <stdint.h>

#define HEADER 4              /* big-endian payload length */
#define MAX_FRAME (64 * 1024) /* longest payload accepted */

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
    if (send_replies(bev, output) < 0) return;
    /* Wake up again only when the frame (or at least its header) is complete. The
     * bufferevent does not call the read callback below the low watermark. */
    size_t low = missing ? missing : HEADER, current;
    bufferevent_getwatermark(bev, EV_READ, &current, NULL);
    if (current != low) bufferevent_setwatermark(bev, EV_READ, low, 0);
    apply_backpressure(bev, output);
}

int main(int argc, char **argv) {
    static const struct libevent_server int32_echo = {
        .name = "libevent_int32_echo",
        .listening_name = "libevent-int32-echo",
        .read_cb = read_cb,
        .read_low_watermark = HEADER, /* no callback before a whole header */
        .framed = 1,
        .min_frame = HEADER,
    };
    return libevent_server_main(argc, argv, &int32_echo);
}

