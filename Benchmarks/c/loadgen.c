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
 * Every byte received is checked against what was sent. Any failed connection, early
 * close or mismatch ends the run with a message on stderr and exit status 1. Every
 * mode has a hard deadline (--deadline, derived from the other options by default).
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
#include <time.h>
#include <unistd.h>

enum mode { PINGPONG, PIPELINE, IDLE };
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

/* ---- main loop ---- */

static void on_signal(int sig) { stop_signal = sig; }

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen pingpong|pipeline|idle --port P [--host H] [--connections N]\n"
            "         [--size BYTES] [--duration S] [--warmup S] [--depth N]\n"
            "         [--delimiter lf] [--framing raw|line|int32] [--hold S]\n"
            "         [--batch N] [--connect-timeout S] [--deadline S] [--server-pid PID]\n");
    exit(2);
}

static void parse(int argc, char **argv) {
    if (argc < 2) usage();
    if (!strcmp(argv[1], "pingpong")) mode = PINGPONG;
    else if (!strcmp(argv[1], "pipeline")) mode = PIPELINE;
    else if (!strcmp(argv[1], "idle")) mode = IDLE;
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
        else if (!strcmp(k, "--connections")) connections = (long)d;
        else if (!strcmp(k, "--size")) size = (long)d;
        else if (!strcmp(k, "--depth")) depth = (long)d;
        else if (!strcmp(k, "--duration")) duration = d;
        else if (!strcmp(k, "--warmup")) warmup = d;
        else if (!strcmp(k, "--hold")) hold = d;
        else if (!strcmp(k, "--batch")) batch = (long)d;
        else if (!strcmp(k, "--connect-timeout")) connect_timeout = d;
        else if (!strcmp(k, "--deadline")) deadline = d;
        else if (!strcmp(k, "--server-pid")) server_pid = (long)d;
        else usage();
    }
    if (!port) fail("--port is required");
    if (connections < 0) connections = mode == IDLE ? 5000 : mode == PIPELINE ? 50 : 100;
    if (size < 0) size = mode == IDLE ? 16 : mode == PIPELINE ? 32 : 64;
    if (depth < 0) depth = mode == PIPELINE ? 64 : 1;
    if (mode == PIPELINE && framing == RAW) framing = LINE;
    if (mode != PIPELINE) depth = 1;
    if (connections < 1 || size < 1 || depth < 1 || batch < 1 || duration <= 0)
        fail("--connections, --size, --depth, --batch and --duration must be positive");
    if (framing == LINE && size < 1) fail("--size counts the '\\n' and must be at least 1");
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

    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    int rc = getaddrinfo(host, port, &hints, &target_addr);
    if (rc != 0) fail("cannot resolve %s:%s: %s", host, port, gai_strerror(rc));

    build_image();
    conns = calloc((size_t)connections, sizeof *conns);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!conns || ep < 0) fail("setup: %s", strerror(errno));

    uint64_t t_begin = now_ns();
    uint64_t hard_end = t_begin + (uint64_t)(deadline * 1e9);
    uint64_t next_scan = t_begin, window_start = 0, window_end = 0, hold_end = 0;
    uint64_t ws_real = 0, we_real = 0;
    double client_cpu0 = 0, client_cpu1 = 0, server_cpu0 = 0, server_cpu1 = 0, busy0 = 0, busy1 = 0;
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
            ws_real = now_ns();
            client_cpu0 = self_cpu_us();
            busy0 = machine_busy_us();
            if (server_pid) server_cpu0 = proc_cpu_us(server_pid);
        }
        if (running && in_window && now >= window_end) {
            we_real = now_ns();
            client_cpu1 = self_cpu_us();
            busy1 = machine_busy_us();
            if (server_pid) server_cpu1 = proc_cpu_us(server_pid);
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

    double seconds = (double)(we_real - ws_real) / 1e9;
    const char *unit = mode == PIPELINE ? "lines" : "requests", *rate = mode == PIPELINE ? "lps" : "rps";
    const char *fr = framing == INT32 ? "int32" : framing == LINE ? "lf" : "raw";
    printf("mode=%s connections=%ld size=%ld depth=%ld framing=%s warmup_s=%g duration_s=%g\n",
           argv[1], connections, size, depth, fr, warmup, duration);
    printf("%s=%llu seconds=%.3f %s=%.1f\n", unit, (unsigned long long)window_count, seconds, rate,
           (double)window_count / seconds);
    if (hist_count)
        printf("latency_us p50=%.1f p90=%.1f p99=%.1f p999=%.1f max=%.1f mean=%.1f\n",
               hist_percentile(0.50) / 1e3, hist_percentile(0.90) / 1e3, hist_percentile(0.99) / 1e3,
               hist_percentile(0.999) / 1e3, (double)hist_max / 1e3,
               (double)hist_sum / (double)hist_count / 1e3);
    printf("client_cpu_us=%.0f client_cpu_pct=%.1f\n", client_cpu1 - client_cpu0,
           (client_cpu1 - client_cpu0) / (seconds * 1e4));
    printf("machine_busy_pct=%.1f cpus=%ld\n", (busy1 - busy0) / (seconds * 1e4), sysconf(_SC_NPROCESSORS_ONLN));
    if (server_pid)
        printf("server_cpu_us=%.0f server_cpu_pct=%.1f server_cpu_us_per_%s=%.4f\n",
               server_cpu1 - server_cpu0, (server_cpu1 - server_cpu0) / (seconds * 1e4),
               mode == PIPELINE ? "line" : "request",
               window_count ? (server_cpu1 - server_cpu0) / (double)window_count : 0.0);
    fflush(stdout);
    if (window_count == 0) fail("no %s completed in the measured window", unit);
    return 0;
}
