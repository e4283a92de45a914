/*
 * loadgen: a small, honest epoll load client for echo servers (one thread).
 *
 *   loadgen pingpong --port P [--host H] [--connections 100] [--size 64]
 *                    [--duration 5] [--warmup 1] [--server-pid PID]
 *       Each connection keeps exactly one SIZE-byte request in flight; a request is
 *       done when all SIZE echoed bytes are back and match what was sent. Only
 *       requests completed inside the measured window (after the warmup) count.
 *
 *   loadgen pipeline --port P [--connections 50] [--depth 64] [--size 32]
 *                    [--delimiter lf | --framing int32] [--duration 5] [--warmup 1]
 *       Keeps DEPTH messages in flight per connection, refilling as echoes arrive.
 *       lf: each message is a line of SIZE bytes including its '\n'.
 *       int32: each message is a 4-byte big-endian length SIZE, then SIZE bytes.
 *
 *   loadgen idle --port P [--connections 5000] [--hold 10] [--size 16]
 *       Opens N connections (at most --batch being set up at once), does one
 *       round trip on each so the server has really accepted and served it, prints
 *       "open=N", holds them for HOLD seconds or until SIGINT/SIGTERM, closes them.
 *
 *   loadgen udp --port P [--sockets 8] [--depth 32] [--size 64] [--timeout-ms 200]
 *               [--gso 0|1] [--gro 0|1] [--duration 5] [--warmup 1]
 *       UDP echo: SOCKETS connected datagram sockets, each keeping DEPTH datagrams of
 *       SIZE bytes (at least 8: each starts with its 8-byte sequence number) in
 *       flight, sent and received in batches (sendmmsg/recvmmsg) so the client costs
 *       less per datagram than the server it drives. A datagram not echoed within
 *       TIMEOUT-MS counts as lost and its place in the window goes to a fresh one, so
 *       loss never stalls the run; an echo that comes after that counts as late.
 *       --gso 1 hands each batch to the kernel as one UDP_SEGMENT send (the server
 *       still gets separate datagrams; the client spends a little less per datagram).
 *       --gro 1 sets UDP_GRO on the client sockets: a run of echoes the server sent as
 *       one UDP_SEGMENT message stays one message on loopback (each echo still checked).
 *       Reports datagrams=N rps=R (datagrams/s), lost=, late=, loss_pct=.
 *
 * Every byte received is checked against what was sent. Any failed connection, early
 * close or mismatch ends the run with a message on stderr and exit status 1 (in udp
 * mode: a datagram of the wrong length or content, or ECONNREFUSED, i.e. nobody
 * listening). Every mode has a hard deadline (--deadline, derived from the other
 * options by default).
 *
 * Results are key=value lines on stdout, e.g.
 *   requests=N seconds=S rps=R
 *   latency_us p50=.. p90=.. p99=.. p999=.. max=.. mean=..
 *   client_cpu_us=.. client_cpu_pct=..
 *   machine_busy_pct=.. cpus=..   (all CPUs' busy time from /proc/stat, 100 per core:
 *                    what remains after client and server is other load, i.e. noise)
 *   server_cpu_us=.. server_cpu_us_per_request=..   (with --server-pid: the server's
 *                    utime+stime from /proc/PID/stat, read at the window's two ends)
 *
 * How the bytes are checked cheaply: every connection sends a deterministic stream of
 * messages; message j of connection c is template (j + c) mod P. All templates, plus
 * enough repeats to cover a full window of DEPTH messages without wrapping, sit in one
 * "image", so a send is one syscall straight from the image and a check is one memcmp
 * against it: no per-message copying or formatting.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum mode { PINGPONG, PIPELINE, IDLE, UDP };
enum framing { RAW, LINE, INT32 };
enum state { UNUSED, CONNECTING, HANDSHAKE, READY, RUNNING, HELD };

struct conn {
    int fd;
    enum state state;
    bool out_armed;         /* EPOLLOUT in the interest set */
    uint32_t phase;         /* template offset: message j uses template (j + phase) % P */
    uint64_t sent, target;  /* stream bytes sent, and bytes we want sent */
    uint64_t recvd;         /* stream bytes echoed back and checked */
    uint64_t issued, done;  /* messages issued, messages fully echoed */
    uint64_t setup_start;   /* ns, for the connect/handshake timeout */
    uint64_t *stamps;       /* issue time of each in-flight message, ring of DEPTH */
};

/* Options. */
static enum mode mode;
static enum framing framing = RAW;
static const char *host = "127.0.0.1", *port;
static long connections = -1, size = -1, depth = -1, batch = 256, server_pid = 0;
static double duration = 5, warmup = 1, hold = 10, connect_timeout = 20, deadline = 0;
static double timeout_ms = 200;
static bool gso, gro;

/* Run state. */
static struct conn *conns;
static int ep;
static size_t msg_len;   /* bytes on the wire per message */
static uint64_t period;  /* P: number of distinct message templates */
static char *image;
static size_t image_len;
static struct addrinfo *target_addr;
static long in_setup, opened, ready;
static bool in_window;
static uint64_t window_count;
static volatile sig_atomic_t stop_signal;

/* Latency histogram: 16 linear sub-buckets per power of two (about 3% resolution). */
#define HIST_BUCKETS 1024
static uint64_t hist[HIST_BUCKETS], hist_count, hist_max, hist_sum;

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int hist_index(uint64_t v) {
    if (v < 16) return (int)v;
    int msb = 63 - __builtin_clzll(v);
    return (msb - 3) * 16 + (int)((v >> (msb - 4)) & 15);
}

static double hist_value(int i) { /* midpoint of bucket i */
    if (i < 16) return i;
    int msb = i / 16 + 3;
    double width = (double)(1ull << (msb - 4));
    return (16 + i % 16) * width + width / 2;
}

static void hist_record(uint64_t ns) {
    hist[hist_index(ns)]++;
    hist_count++;
    hist_sum += ns;
    if (ns > hist_max) hist_max = ns;
}

static double hist_percentile(double q) {
    uint64_t rank = (uint64_t)(q * (double)hist_count + 0.999999), seen = 0;
    if (rank == 0) rank = 1;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += hist[i];
        if (seen >= rank) return hist_value(i) < (double)hist_max ? hist_value(i) : (double)hist_max;
    }
    return (double)hist_max;
}

/* CPU time of another process, in microseconds: utime + stime from /proc/PID/stat. */
static double proc_cpu_us(long pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("cannot open %s: %s", path, strerror(errno));
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) fail("cannot read %s", path);
    buf[n] = 0;
    /* The command name may hold spaces and ')': fields restart after the last ')'. */
    char *p = strrchr(buf, ')');
    unsigned long long utime, stime;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                     &utime, &stime) != 2)
        fail("cannot parse %s", path);
    return (double)(utime + stime) * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

/* Busy CPU time of the whole machine (all CPUs), in microseconds, from /proc/stat:
 * lets the caller see how much CPU went to processes other than client and server. */
static double machine_busy_us(void) {
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return 0;
    int got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                     &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (got < 8) return 0;
    /* user nice system [idle] [iowait] irq softirq steal */
    unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    return (double)busy * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_us(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* The measured window: its two instants, and the CPU counters read at each. */
struct window {
    uint64_t ns[2];
    double client_us[2], server_us[2], busy_us[2];
};

/* Reads the clock and the counters for the window's start (end = 0) or end (1). */
static void window_mark(struct window *w, int end) {
    w->ns[end] = now_ns();
    w->client_us[end] = self_cpu_us();
    w->busy_us[end] = machine_busy_us();
    if (server_pid) w->server_us[end] = proc_cpu_us(server_pid);
}

static double window_seconds(const struct window *w) { return (double)(w->ns[1] - w->ns[0]) / 1e9; }

/* The lines every mode ends with: latency, client CPU, machine, server CPU per `unit`
 * (`count` of them in the window). */
static void print_window(const struct window *w, uint64_t count, const char *unit) {
    double seconds = window_seconds(w);
    if (hist_count)
        printf("latency_us p50=%.1f p90=%.1f p99=%.1f p999=%.1f max=%.1f mean=%.1f\n",
               hist_percentile(0.50) / 1e3, hist_percentile(0.90) / 1e3, hist_percentile(0.99) / 1e3,
               hist_percentile(0.999) / 1e3, (double)hist_max / 1e3,
               (double)hist_sum / (double)hist_count / 1e3);
    printf("client_cpu_us=%.0f client_cpu_pct=%.1f\n", w->client_us[1] - w->client_us[0],
           (w->client_us[1] - w->client_us[0]) / (seconds * 1e4));
    printf("machine_busy_pct=%.1f cpus=%ld\n", (w->busy_us[1] - w->busy_us[0]) / (seconds * 1e4),
           sysconf(_SC_NPROCESSORS_ONLN));
    if (server_pid) {
        double server = w->server_us[1] - w->server_us[0];
        printf("server_cpu_us=%.0f server_cpu_pct=%.1f server_cpu_us_per_%s=%.4f\n", server,
               server / (seconds * 1e4), unit, count ? server / (double)count : 0.0);
    }
    fflush(stdout);
}

/* ---- the message image ---- */

static void build_image(void) {
    msg_len = framing == INT32 ? (size_t)size + 4 : (size_t)size;
    long d = depth > 0 ? depth : 1;
    /* Enough templates that neighbouring connections and messages differ, few enough
     * that the image stays small for big messages. */
    period = (64u << 20) / msg_len;
    if (period > 251) period = 251;
    if (period < 2) period = 2;
    image_len = (period + (uint64_t)d + 1) * msg_len;
    image = malloc(image_len);
    if (!image) fail("out of memory for a %zu-byte message image", image_len);
    for (uint64_t k = 0; k < period + (uint64_t)d + 1; k++) {
        uint64_t t = k % period;
        unsigned char *m = (unsigned char *)image + k * msg_len;
        size_t i = 0;
        if (framing == INT32) {
            uint32_t be = htonl((uint32_t)size);
            memcpy(m, &be, 4);
            i = 4;
        }
        for (; i < msg_len; i++) {
            if (framing == LINE) /* printable, never '\n' */
                m[i] = (unsigned char)(0x21 + (t * 31 + i * 7) % 94);
            else
                m[i] = (unsigned char)(t * 131 + i * 7 + 1);
        }
        if (framing == LINE) m[msg_len - 1] = '\n';
    }
}

/* Where stream byte s of connection c sits in the image. */
static inline size_t image_offset(const struct conn *c, uint64_t s) {
    uint64_t j = s / msg_len;
    return (size_t)(((j + c->phase) % period) * msg_len + s % msg_len);
}

/* ---- connections ---- */

static void set_out(struct conn *c, bool on) {
    if (c->out_armed == on) return;
    c->out_armed = on;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u32 = (uint32_t)(c - conns)};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0) fail("epoll_ctl: %s", strerror(errno));
}

static void flush_out(struct conn *c) {
    while (c->sent < c->target) {
        size_t want = (size_t)(c->target - c->sent);
        ssize_t n = send(c->fd, image + image_offset(c, c->sent), want, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            fail("connection %ld: send: %s", (long)(c - conns), strerror(errno));
        }
        c->sent += (uint64_t)n;
        if ((size_t)n < want) break; /* the socket buffer is full: wait for EPOLLOUT */
    }
    set_out(c, c->sent < c->target);
}

static void issue(struct conn *c, uint64_t count, uint64_t now) {
    for (uint64_t k = 0; k < count; k++) c->stamps[(c->issued + k) % (uint64_t)depth] = now;
    c->issued += count;
    c->target = c->issued * msg_len;
    flush_out(c);
}

static void on_readable(struct conn *c) {
    static char buf[64 * 1024];
    ssize_t n = read(c->fd, buf, sizeof buf);
    long id = (long)(c - conns);
    if (n == 0) fail("connection %ld: closed by the server after %llu of %llu bytes echoed", id,
                     (unsigned long long)c->recvd, (unsigned long long)c->sent);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        fail("connection %ld: read: %s", id, strerror(errno));
    }
    if (c->recvd + (uint64_t)n > c->sent)
        fail("connection %ld: %zd bytes received but only %llu outstanding", id, n,
             (unsigned long long)(c->sent - c->recvd));
    if (memcmp(buf, image + image_offset(c, c->recvd), (size_t)n) != 0)
        fail("connection %ld: echoed bytes differ from those sent (stream offset %llu, %zd bytes)",
             id, (unsigned long long)c->recvd, n);
    c->recvd += (uint64_t)n;

    uint64_t finished = c->recvd / msg_len - c->done;
    if (finished == 0) return;
    uint64_t now = now_ns();
    if (in_window) {
        window_count += finished;
        for (uint64_t k = 0; k < finished; k++)
            hist_record(now - c->stamps[(c->done + k) % (uint64_t)depth]);
    }
    c->done += finished;
    if (c->state == RUNNING) {
        issue(c, finished, now);
    } else if (c->state == HANDSHAKE) { /* idle mode: one round trip, then hold */
        c->state = HELD;
        in_setup--;
        ready++;
    }
}

static void start_connection(long i) {
    struct conn *c = &conns[i];
    int fd = socket(target_addr->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail("connection %ld: socket: %s%s", i, strerror(errno),
             errno == EMFILE ? " (raise the hard limit: ulimit -Hn)" : "");
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->phase = (uint32_t)(i % (long)period);
    c->setup_start = now_ns();
    c->stamps = calloc((size_t)depth, sizeof *c->stamps);
    if (!c->stamps) fail("out of memory");
    int rc = connect(fd, target_addr->ai_addr, target_addr->ai_addrlen);
    if (rc != 0 && errno != EINPROGRESS) fail("connection %ld: connect to %s:%s: %s", i, host, port, strerror(errno));
    c->state = CONNECTING;
    c->out_armed = true;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) fail("epoll_ctl: %s", strerror(errno));
    in_setup++;
    opened++;
}

static void on_connected(struct conn *c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) fail("connection %ld: connect to %s:%s: %s", (long)(c - conns), host, port, strerror(err));
    set_out(c, false);
    if (mode == IDLE) {
        c->state = HANDSHAKE;
        issue(c, 1, now_ns());
    } else {
        c->state = READY;
        in_setup--;
        ready++;
    }
}

static void on_event(struct conn *c, uint32_t events) {
    if (c->state == CONNECTING) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(c);
        return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
    if ((events & EPOLLOUT) && c->out_armed) flush_out(c);
}

/* ---- udp mode ---- */

#define UDP_BATCH 64 /* datagrams per recvmmsg or sendmmsg call; the kernel's UDP GSO limit */
#define UDP_READS 4  /* recvmmsg calls per readiness event before other sockets' turn */

/* One place in a socket's window of DEPTH datagrams. Place k carries sequence numbers
 * k, k + DEPTH, k + 2 DEPTH, ...: an echo's sequence number names its place, and one
 * below the place's current number is an echo that came after it was counted lost. */
struct udp_slot {
    uint64_t seq;     /* the datagram's first 8 bytes (host byte order) */
    uint64_t sent_ns; /* when it was sent; 0 while it waits in the send queue */
};

struct udp_socket {
    int fd;
    bool out_armed;          /* EPOLLOUT in the interest set */
    uint32_t phase;          /* datagram seq has template (seq + phase) % P */
    struct udp_slot *slots;  /* DEPTH places */
    uint32_t *queue;         /* places waiting to be sent: a ring of DEPTH */
    uint32_t q_head, q_len;
};

static struct udp_socket *usocks;
/* UDP_BATCH receive buffers of udp_rbuf_size bytes: SIZE + 1 (one more shows a long
 * echo), or 64 KiB with --gro 1 (a run of echoes in one message). */
static char *udp_rbuf;
static size_t udp_rbuf_size;
static uint64_t udp_lost, udp_late;

/* The bytes of datagram `seq` of socket `u` after its sequence number. */
static inline const char *udp_body(const struct udp_socket *u, uint64_t seq) {
    return image + ((seq + u->phase) % period) * msg_len + 8;
}

static void udp_queue(struct udp_socket *u, uint32_t place) {
    u->slots[place].sent_ns = 0;
    u->queue[(u->q_head + u->q_len) % (uint32_t)depth] = place;
    u->q_len++;
}

static void udp_set_out(struct udp_socket *u, bool on) {
    if (u->out_armed == on) return;
    u->out_armed = on;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u32 = (uint32_t)(u - usocks)};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, u->fd, &ev) != 0) fail("epoll_ctl: %s", strerror(errno));
}

static void udp_fail_errno(const struct udp_socket *u, const char *call) {
    fail("udp socket %ld: %s: %s%s", (long)(u - usocks), call, strerror(errno),
         errno == ECONNREFUSED ? " (nothing listens on that UDP port)" : "");
}

/* Sends the first `n` (at most UDP_BATCH) queued datagrams of `u`, each straight from
 * its place's sequence number and the image: one sendmmsg, or with --gso one sendmsg
 * whose buffer the kernel cuts into SIZE-byte datagrams (UDP_SEGMENT), which spares
 * the client one trip down the IP stack per datagram; the server still receives them
 * one by one. Returns how many were sent, or -1 with errno. */
static int udp_send(struct udp_socket *u, unsigned n) {
    struct mmsghdr msgs[UDP_BATCH];
    struct iovec iov[UDP_BATCH][2];
    uint32_t d = (uint32_t)depth;
    for (unsigned k = 0; k < n; k++) {
        struct udp_slot *slot = &u->slots[u->queue[(u->q_head + k) % d]];
        iov[k][0] = (struct iovec){.iov_base = &slot->seq, .iov_len = 8};
        iov[k][1] = (struct iovec){.iov_base = (void *)udp_body(u, slot->seq), .iov_len = msg_len - 8};
        msgs[k] = (struct mmsghdr){.msg_hdr = {.msg_iov = iov[k], .msg_iovlen = 2}};
    }
    if (!gso || n == 1) return sendmmsg(u->fd, msgs, n, 0);
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } control = {0};
    struct msghdr mh = {.msg_iov = iov[0], .msg_iovlen = 2 * n, .msg_control = control.buf,
                        .msg_controllen = sizeof control.buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t segment = (uint16_t)msg_len;
    memcpy(CMSG_DATA(cm), &segment, sizeof segment);
    return sendmsg(u->fd, &mh, 0) < 0 ? -1 : (int)n;
}

/* Sends the queued datagrams, UDP_BATCH at a time, until the queue is empty or the
 * kernel takes no more (then EPOLLOUT says when to go on). */
static void udp_flush(struct udp_socket *u) {
    uint32_t d = (uint32_t)depth;
    while (u->q_len > 0) {
        unsigned n = u->q_len < UDP_BATCH ? u->q_len : UDP_BATCH;
        int sent = udp_send(u, n);
        if (sent < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == ENOBUFS) break;
            udp_fail_errno(u, gso ? "sendmsg" : "sendmmsg");
        }
        uint64_t now = now_ns();
        for (int k = 0; k < sent; k++) u->slots[u->queue[(u->q_head + (uint32_t)k) % d]].sent_ns = now;
        u->q_head = (u->q_head + (uint32_t)sent) % d;
        u->q_len -= (uint32_t)sent;
        if ((unsigned)sent < n) break;
    }
    udp_set_out(u, u->q_len > 0);
}

/* Checks one echo, `len` bytes at `d`, against what was sent, and refills its place. */
static void udp_echoed(struct udp_socket *u, const char *d, size_t len, uint64_t now) {
    long id = (long)(u - usocks);
    if (len != msg_len)
        fail("udp socket %ld: a %zu-byte echo of a %zu-byte datagram", id, len, msg_len);
    uint64_t seq;
    memcpy(&seq, d, 8);
    uint32_t place = (uint32_t)(seq % (uint64_t)depth);
    struct udp_slot *slot = &u->slots[place];
    if (seq > slot->seq || (seq == slot->seq && slot->sent_ns == 0))
        fail("udp socket %ld: echo of datagram %llu, which was never sent", id, (unsigned long long)seq);
    if (memcmp(d + 8, udp_body(u, seq), msg_len - 8) != 0)
        fail("udp socket %ld: echoed bytes of datagram %llu differ from those sent", id, (unsigned long long)seq);
    if (seq < slot->seq) { /* already counted lost and replaced */
        if (in_window) udp_late++;
        return;
    }
    if (in_window) {
        window_count++;
        hist_record(now - slot->sent_ns);
    }
    slot->seq += (uint64_t)depth;
    udp_queue(u, place);
}

/* The segment size the kernel gives with a coalesced (UDP_GRO) receive, or 0. */
static size_t gro_segment(struct msghdr *mh) {
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
        if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
            uint16_t segment;
            memcpy(&segment, CMSG_DATA(cm), sizeof segment);
            return segment;
        }
    }
    return 0;
}

/* Takes the echoes waiting on `u` (at most UDP_READS batches), checks each against
 * what was sent, refills their places and sends the refills in one go. With --gro 1 a
 * message may hold a run of echoes the kernel kept together (UDP_GRO), each SIZE
 * bytes. */
static void udp_receive(struct udp_socket *u) {
    struct mmsghdr msgs[UDP_BATCH];
    struct iovec iov[UDP_BATCH];
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control[UDP_BATCH];
    for (int reads = 0; reads < UDP_READS; reads++) {
        for (unsigned k = 0; k < UDP_BATCH; k++) {
            iov[k] = (struct iovec){.iov_base = udp_rbuf + k * udp_rbuf_size, .iov_len = udp_rbuf_size};
            msgs[k] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[k], .msg_iovlen = 1}};
            if (gro) {
                msgs[k].msg_hdr.msg_control = control[k].buf;
                msgs[k].msg_hdr.msg_controllen = sizeof control[k].buf;
            }
        }
        int n = recvmmsg(u->fd, msgs, UDP_BATCH, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            udp_fail_errno(u, "recvmmsg");
        }
        uint64_t now = now_ns();
        for (int k = 0; k < n; k++) {
            const char *d = iov[k].iov_base;
            size_t len = msgs[k].msg_len;
            if (msgs[k].msg_hdr.msg_flags & MSG_TRUNC)
                fail("udp socket %ld: an echo longer than %zu bytes", (long)(u - usocks), udp_rbuf_size);
            size_t segment = gro ? gro_segment(&msgs[k].msg_hdr) : 0;
            if (segment == 0) segment = len;
            for (size_t at = 0; at < len; at += segment)
                udp_echoed(u, d + at, len - at < segment ? len - at : segment, now);
        }
        if (n < UDP_BATCH) break;
    }
    udp_flush(u);
}

/* Counts every datagram out longer than --timeout-ms as lost and sends a fresh one in
 * its place, so a lossy server slows the run down but never stalls it. */
static void udp_expire(uint64_t now) {
    uint64_t limit = (uint64_t)(timeout_ms * 1e6);
    for (long i = 0; i < connections; i++) {
        struct udp_socket *u = &usocks[i];
        for (uint32_t place = 0; place < (uint32_t)depth; place++) {
            struct udp_slot *slot = &u->slots[place];
            if (slot->sent_ns == 0 || now - slot->sent_ns <= limit) continue;
            if (in_window) udp_lost++;
            slot->seq += (uint64_t)depth;
            udp_queue(u, place);
        }
        if (u->q_len > 0) udp_flush(u);
    }
}

static int run_udp(void) {
    usocks = calloc((size_t)connections, sizeof *usocks);
    udp_rbuf_size = gro ? 65536 : msg_len + 1;
    udp_rbuf = malloc(UDP_BATCH * udp_rbuf_size);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!usocks || !udp_rbuf || ep < 0) fail("setup: %s", strerror(errno));
    for (long i = 0; i < connections; i++) {
        struct udp_socket *u = &usocks[i];
        u->fd = socket(target_addr->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (u->fd < 0) fail("udp socket %ld: socket: %s", i, strerror(errno));
        /* Connected: the kernel drops datagrams from anyone but the server, and an ICMP
         * port-unreachable comes back as ECONNREFUSED. */
        if (connect(u->fd, target_addr->ai_addr, target_addr->ai_addrlen) != 0)
            fail("udp socket %ld: connect to %s:%s: %s", i, host, port, strerror(errno));
        int one = 1;
        if (gro && setsockopt(u->fd, SOL_UDP, UDP_GRO, &one, sizeof one) != 0)
            fail("udp socket %ld: UDP_GRO: %s", i, strerror(errno));
        u->phase = (uint32_t)(i % (long)period);
        u->slots = calloc((size_t)depth, sizeof *u->slots);
        u->queue = calloc((size_t)depth, sizeof *u->queue);
        if (!u->slots || !u->queue) fail("out of memory");
        for (uint32_t place = 0; place < (uint32_t)depth; place++) {
            u->slots[place].seq = place;
            udp_queue(u, place);
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, u->fd, &ev) != 0) fail("epoll_ctl: %s", strerror(errno));
    }

    uint64_t start = now_ns();
    uint64_t hard_end = start + (uint64_t)(deadline * 1e9);
    uint64_t window_start = start + (uint64_t)(warmup * 1e9);
    uint64_t window_end = window_start + (uint64_t)(duration * 1e9);
    uint64_t scan_every = (uint64_t)(timeout_ms * 1e6 / 4);
    if (scan_every < 1000000) scan_every = 1000000;
    uint64_t next_scan = start + scan_every;
    struct window w = {0};
    struct epoll_event events[256];
    for (long i = 0; i < connections; i++) udp_flush(&usocks[i]);

    for (;;) {
        uint64_t now = now_ns();
        if (now >= hard_end) fail("deadline of %.1f s reached", deadline);
        if (stop_signal) fail("interrupted by signal %d", (int)stop_signal);
        if (!in_window && now >= window_start) {
            in_window = true;
            window_mark(&w, 0);
        }
        if (in_window && now >= window_end) {
            window_mark(&w, 1);
            break;
        }
        if (now >= next_scan) {
            udp_expire(now);
            next_scan = now + scan_every;
        }
        uint64_t wake = in_window ? window_end : window_start;
        if (next_scan < wake) wake = next_scan;
        int timeout = wake > now ? (int)((wake - now + 999999) / 1000000) : 0;
        int n = epoll_wait(ep, events, 256, timeout);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            struct udp_socket *u = &usocks[events[i].data.u32];
            if (events[i].events & (EPOLLIN | EPOLLERR)) udp_receive(u);
            if ((events[i].events & EPOLLOUT) && u->out_armed) udp_flush(u);
        }
    }

    double seconds = window_seconds(&w);
    printf("mode=udp sockets=%ld size=%ld depth=%ld timeout_ms=%g gso=%d gro=%d warmup_s=%g duration_s=%g\n",
           connections, size, depth, timeout_ms, gso, gro, warmup, duration);
    printf("datagrams=%llu seconds=%.3f rps=%.1f\n", (unsigned long long)window_count, seconds,
           (double)window_count / seconds);
    printf("lost=%llu late=%llu loss_pct=%.3f\n", (unsigned long long)udp_lost, (unsigned long long)udp_late,
           window_count + udp_lost ? (double)udp_lost * 100 / (double)(window_count + udp_lost) : 0.0);
    print_window(&w, window_count, "datagram");
    if (window_count == 0) fail("no datagram echoed in the measured window");
    return 0;
}

/* ---- main loop ---- */

static void on_signal(int sig) { stop_signal = sig; }

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen pingpong|pipeline|idle|udp --port P [--host H] [--connections N]\n"
            "         [--size BYTES] [--duration S] [--warmup S] [--depth N]\n"
            "         [--delimiter lf] [--framing raw|line|int32] [--hold S]\n"
            "         [--batch N] [--connect-timeout S] [--deadline S] [--server-pid PID]\n"
            "         [--sockets N] [--timeout-ms MS] [--gso 0|1] [--gro 0|1]   (udp: --sockets is --connections)\n");
    exit(2);
}

static void parse(int argc, char **argv) {
    if (argc < 2) usage();
    if (!strcmp(argv[1], "pingpong")) mode = PINGPONG;
    else if (!strcmp(argv[1], "pipeline")) mode = PIPELINE;
    else if (!strcmp(argv[1], "idle")) mode = IDLE;
    else if (!strcmp(argv[1], "udp")) mode = UDP;
    else usage();
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i];
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        char *end;
        double d = strtod(v, &end);
        bool numeric = *v && !*end && d >= 0;
        if (!strcmp(k, "--host")) host = v;
        else if (!strcmp(k, "--port")) port = v;
        else if (!strcmp(k, "--delimiter")) {
            if (strcmp(v, "lf")) fail("--delimiter: only lf is supported");
            framing = LINE;
        } else if (!strcmp(k, "--framing")) {
            if (!strcmp(v, "raw")) framing = RAW;
            else if (!strcmp(v, "line") || !strcmp(v, "lf")) framing = LINE;
            else if (!strcmp(v, "int32")) framing = INT32;
            else fail("--framing: raw, line or int32");
        } else if (!numeric) fail("%s: expected a non-negative number, got '%s'", k, v);
        else if (!strcmp(k, "--connections") || !strcmp(k, "--sockets")) connections = (long)d;
        else if (!strcmp(k, "--size")) size = (long)d;
        else if (!strcmp(k, "--depth")) depth = (long)d;
        else if (!strcmp(k, "--duration")) duration = d;
        else if (!strcmp(k, "--warmup")) warmup = d;
        else if (!strcmp(k, "--hold")) hold = d;
        else if (!strcmp(k, "--batch")) batch = (long)d;
        else if (!strcmp(k, "--connect-timeout")) connect_timeout = d;
        else if (!strcmp(k, "--deadline")) deadline = d;
        else if (!strcmp(k, "--server-pid")) server_pid = (long)d;
        else if (!strcmp(k, "--timeout-ms")) timeout_ms = d;
        else if (!strcmp(k, "--gso")) gso = d != 0;
        else if (!strcmp(k, "--gro")) gro = d != 0;
        else usage();
    }
    if (!port) fail("--port is required");
    if (connections < 0) connections = mode == IDLE ? 5000 : mode == PIPELINE ? 50 : mode == UDP ? 8 : 100;
    if (size < 0) size = mode == IDLE ? 16 : mode == PIPELINE ? 32 : 64;
    if (depth < 0) depth = mode == PIPELINE ? 64 : mode == UDP ? 32 : 1;
    if (mode == PIPELINE && framing == RAW) framing = LINE;
    if (mode == UDP) framing = RAW;
    if (mode != PIPELINE && mode != UDP) depth = 1;
    if (connections < 1 || size < 1 || depth < 1 || batch < 1 || duration <= 0)
        fail("--connections, --size, --depth, --batch and --duration must be positive");
    if (framing == LINE && size < 1) fail("--size counts the '\\n' and must be at least 1");
    if (mode == UDP && (size < 8 || size > 65507))
        fail("udp: --size must be 8 (the sequence number) to 65507 bytes");
    if (mode == UDP && timeout_ms <= 0) fail("--timeout-ms must be positive");
    if (deadline == 0)
        deadline = connect_timeout + (mode == IDLE ? hold + 30 : warmup + duration + 10);
}

int main(int argc, char **argv) {
    parse(argc, argv);

    /* Many connections need many descriptors: take the whole hard limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)connections + 16 > rl.rlim_cur)
        fail("%ld connections need more descriptors than RLIMIT_NOFILE allows (%llu)",
             connections, (unsigned long long)rl.rlim_cur);

    /* No SA_RESTART: a signal interrupts epoll_wait. SIGALRM is the backstop for the
     * deadline should the loop itself ever wedge. */
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    alarm((unsigned)deadline + 5);

    struct addrinfo hints = {.ai_socktype = mode == UDP ? SOCK_DGRAM : SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    int rc = getaddrinfo(host, port, &hints, &target_addr);
    if (rc != 0) fail("cannot resolve %s:%s: %s", host, port, gai_strerror(rc));

    build_image();
    if (mode == UDP) return run_udp();
    conns = calloc((size_t)connections, sizeof *conns);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!conns || ep < 0) fail("setup: %s", strerror(errno));

    uint64_t t_begin = now_ns();
    uint64_t hard_end = t_begin + (uint64_t)(deadline * 1e9);
    uint64_t next_scan = t_begin, window_start = 0, window_end = 0, hold_end = 0;
    struct window w = {0};
    bool running = false, holding = false;
    struct epoll_event events[1024];

    for (;;) {
        uint64_t now = now_ns();
        if (now >= hard_end) fail("deadline of %.1f s reached (%ld of %ld connections ready)", deadline, ready, connections);
        if (stop_signal) {
            if (holding) break;
            fail("interrupted by signal %d", (int)stop_signal);
        }

        /* Setup: keep up to --batch connections connecting; time out stuck ones. */
        if (!running && !holding) {
            while (opened < connections && in_setup < batch) start_connection(opened);
            if (now >= next_scan) {
                next_scan = now + 200000000u;
                for (long i = 0; i < opened; i++) {
                    struct conn *c = &conns[i];
                    if ((c->state == CONNECTING || c->state == HANDSHAKE) && now > c->setup_start &&
                        now - c->setup_start > (uint64_t)(connect_timeout * 1e9))
                        fail("connection %ld: %s after %.1f s", i,
                             c->state == CONNECTING ? "still connecting" : "no echo of its first message",
                             connect_timeout);
                }
            }
            if (ready == connections) {
                if (mode == IDLE) {
                    printf("open=%ld\n", ready);
                    fflush(stdout);
                    holding = true;
                    hold_end = now + (uint64_t)(hold * 1e9);
                } else {
                    running = true;
                    window_start = now + (uint64_t)(warmup * 1e9);
                    window_end = window_start + (uint64_t)(duration * 1e9);
                    for (long i = 0; i < connections; i++) {
                        conns[i].state = RUNNING;
                        issue(&conns[i], (uint64_t)depth, now);
                    }
                }
            }
        }

        /* The measured window: counts, client CPU and server CPU between two instants. */
        if (running && !in_window && window_start && now >= window_start) {
            in_window = true;
            window_start = 0;
            window_mark(&w, 0);
        }
        if (running && in_window && now >= window_end) {
            window_mark(&w, 1);
            break;
        }
        if (holding && now >= hold_end) break;

        /* Sleep no later than the next thing that must happen. */
        uint64_t wake = hard_end;
        if (running) wake = in_window ? window_end : window_start;
        else if (holding) wake = hold_end < wake ? hold_end : wake;
        else if (next_scan < wake) wake = next_scan;
        int timeout_ms = wake > now ? (int)((wake - now + 999999) / 1000000) : 0;
        if (!holding && !running) timeout_ms = timeout_ms > 200 ? 200 : timeout_ms;

        int n = epoll_wait(ep, events, 1024, timeout_ms);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) on_event(&conns[events[i].data.u32], events[i].events);
    }

    if (mode == IDLE) {
        for (long i = 0; i < connections; i++) close(conns[i].fd);
        printf("closed=%ld\n", connections);
        return 0;
    }

    double seconds = window_seconds(&w);
    const char *unit = mode == PIPELINE ? "lines" : "requests", *rate = mode == PIPELINE ? "lps" : "rps";
    const char *fr = framing == INT32 ? "int32" : framing == LINE ? "lf" : "raw";
    printf("mode=%s connections=%ld size=%ld depth=%ld framing=%s warmup_s=%g duration_s=%g\n",
           argv[1], connections, size, depth, fr, warmup, duration);
    printf("%s=%llu seconds=%.3f %s=%.1f\n", unit, (unsigned long long)window_count, seconds, rate,
           (double)window_count / seconds);
    print_window(&w, window_count, mode == PIPELINE ? "line" : "request");
    if (window_count == 0) fail("no %s completed in the measured window", unit);
    return 0;
}
