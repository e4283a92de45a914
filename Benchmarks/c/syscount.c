/*
 * syscount.so: an LD_PRELOAD counter of the socket calls an echo server makes through
 * libc (recvmmsg, recvfrom, sendmmsg, sendmsg, sendto, epoll_wait), with the messages
 * recvmmsg and sendmmsg moved, printed on stderr when the server exits normally. It
 * costs a few nanoseconds a call, so batch sizes stay what they are at full speed
 * (strace or valgrind slow the server down and make its batches grow).
 *
 *   LD_PRELOAD=Benchmarks/bin/syscount.so reactor serve echo --udp-only --port 0 ...
 *   -> syscount recvmmsg=78221 received=306890 sendmmsg=71207 sent=75356 segmented=74828 ...
 *
 * `sent` counts sendmmsg messages, `segmented` those with a control message (a
 * UDP_SEGMENT run of datagrams). Not thread-safe: for the one-thread servers here.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>

static unsigned long long recvmmsg_calls, received, sendmmsg_calls, sent, segmented, sendmsg_calls, sendto_calls,
    recvfrom_calls, epoll_calls, epoll_events;

#define REAL(name)                                   \
    static __typeof__(name) *real_##name;            \
    if (!real_##name) real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

int recvmmsg(int fd, struct mmsghdr *messages, unsigned int count, int flags, struct timespec *timeout) {
    REAL(recvmmsg);
    int n = real_recvmmsg(fd, messages, count, flags, timeout);
    recvmmsg_calls++;
    if (n > 0) received += (unsigned)n;
    return n;
}

int sendmmsg(int fd, struct mmsghdr *messages, unsigned int count, int flags) {
    REAL(sendmmsg);
    int n = real_sendmmsg(fd, messages, count, flags);
    sendmmsg_calls++;
    for (int i = 0; i < n; i++) {
        sent++;
        if (messages[i].msg_hdr.msg_controllen) segmented++;
    }
    return n;
}

ssize_t sendmsg(int fd, const struct msghdr *message, int flags) {
    REAL(sendmsg);
    sendmsg_calls++;
    return real_sendmsg(fd, message, flags);
}

ssize_t sendto(int fd, const void *buffer, size_t length, int flags, const struct sockaddr *to, socklen_t to_length) {
    REAL(sendto);
    sendto_calls++;
    return real_sendto(fd, buffer, length, flags, to, to_length);
}

ssize_t recvfrom(int fd, void *buffer, size_t length, int flags, struct sockaddr *from, socklen_t *from_length) {
    REAL(recvfrom);
    recvfrom_calls++;
    return real_recvfrom(fd, buffer, length, flags, from, from_length);
}

int epoll_wait(int epfd, struct epoll_event *events, int count, int timeout) {
    REAL(epoll_wait);
    int n = real_epoll_wait(epfd, events, count, timeout);
    epoll_calls++;
    if (n > 0) epoll_events += (unsigned)n;
    return n;
}

__attribute__((destructor)) static void report(void) {
    fprintf(stderr,
            "syscount recvmmsg=%llu received=%llu recvfrom=%llu sendmmsg=%llu sent=%llu segmented=%llu "
            "sendmsg=%llu sendto=%llu epoll_wait=%llu events=%llu\n",
            recvmmsg_calls, received, recvfrom_calls, sendmmsg_calls, sent, segmented, sendmsg_calls, sendto_calls,
            epoll_calls, epoll_events);
}
