#define _GNU_SOURCE
#include "CEvent.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>

struct event *cevent_timer_new(struct event_base *base, event_callback_fn callback, void *context) {
    return evtimer_new(base, callback, context);
}

struct event *cevent_signal_new(struct event_base *base, int signal_number,
                                event_callback_fn callback, void *context) {
    return event_new(base, signal_number, EV_SIGNAL | EV_PERSIST, callback, context);
}

int cevent_socket(int domain, int type) {
    return socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

int cevent_accept(int listen_fd, struct sockaddr *address, socklen_t *length) {
    return accept4(listen_fd, address, length, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

ssize_t cevent_send3(int fd,
                     const void *first, size_t first_length,
                     const void *second, size_t second_length,
                     const void *third, size_t third_length) {
    struct iovec parts[3];
    int count = 0;
    if (first_length > 0) { parts[count].iov_base = (void *)first; parts[count].iov_len = first_length; count++; }
    if (second_length > 0) { parts[count].iov_base = (void *)second; parts[count].iov_len = second_length; count++; }
    if (third_length > 0) { parts[count].iov_base = (void *)third; parts[count].iov_len = third_length; count++; }
    if (count == 1) {
        return send(fd, parts[0].iov_base, parts[0].iov_len, MSG_NOSIGNAL);
    }
    struct msghdr message = {0};
    message.msg_iov = parts;
    message.msg_iovlen = (size_t)count;
    return sendmsg(fd, &message, MSG_NOSIGNAL);
}

int cevent_recv_batch(int fd, cevent_datagram *datagrams, unsigned int count) {
    struct mmsghdr messages[CEVENT_DATAGRAM_BATCH_MAX];
    struct iovec parts[CEVENT_DATAGRAM_BATCH_MAX];
    if (count > CEVENT_DATAGRAM_BATCH_MAX) count = CEVENT_DATAGRAM_BATCH_MAX;
    for (unsigned int i = 0; i < count; i++) {
        parts[i].iov_base = datagrams[i].data;
        parts[i].iov_len = datagrams[i].capacity;
        memset(&messages[i].msg_hdr, 0, sizeof messages[i].msg_hdr);
        messages[i].msg_hdr.msg_name = &datagrams[i].address;
        messages[i].msg_hdr.msg_namelen = sizeof datagrams[i].address;
        messages[i].msg_hdr.msg_iov = &parts[i];
        messages[i].msg_hdr.msg_iovlen = 1;
    }
    int received = recvmmsg(fd, messages, count, MSG_DONTWAIT | MSG_TRUNC, NULL);
    for (int i = 0; i < received; i++) {
        datagrams[i].address_length = messages[i].msg_hdr.msg_namelen;
        datagrams[i].length = messages[i].msg_len;
        // MSG_TRUNC in the flags argument already reports the real length; the flag on
        // the message covers kernels that only set that.
        if ((messages[i].msg_hdr.msg_flags & MSG_TRUNC) && datagrams[i].length <= datagrams[i].capacity) {
            datagrams[i].length = (unsigned int)datagrams[i].capacity + 1;
        }
    }
    return received;
}

int cevent_send_batch(int fd, const cevent_datagram *datagrams, unsigned int count) {
    struct mmsghdr messages[CEVENT_DATAGRAM_BATCH_MAX];
    struct iovec parts[CEVENT_DATAGRAM_BATCH_MAX];
    if (count > CEVENT_DATAGRAM_BATCH_MAX) count = CEVENT_DATAGRAM_BATCH_MAX;
    if (count == 1) {
        const cevent_datagram *only = &datagrams[0];
        ssize_t sent = sendto(fd, only->data, only->length, MSG_DONTWAIT | MSG_NOSIGNAL,
                              only->address_length ? (const struct sockaddr *)&only->address : NULL,
                              only->address_length);
        return sent < 0 ? -1 : 1;
    }
    for (unsigned int i = 0; i < count; i++) {
        parts[i].iov_base = datagrams[i].data;
        parts[i].iov_len = datagrams[i].length;
        memset(&messages[i].msg_hdr, 0, sizeof messages[i].msg_hdr);
        if (datagrams[i].address_length) {
            messages[i].msg_hdr.msg_name = (void *)&datagrams[i].address;
            messages[i].msg_hdr.msg_namelen = datagrams[i].address_length;
        }
        messages[i].msg_hdr.msg_iov = &parts[i];
        messages[i].msg_hdr.msg_iovlen = 1;
    }
    return sendmmsg(fd, messages, count, MSG_DONTWAIT | MSG_NOSIGNAL);
}

int cevent_eventfd(void) {
    return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

void cevent_set_thread_name(const char *name) {
    char truncated[16];
    strncpy(truncated, name, sizeof truncated - 1);
    truncated[sizeof truncated - 1] = 0;
    pthread_setname_np(pthread_self(), truncated);
}

uint64_t cevent_monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

uint64_t cevent_coarse_monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

const char *cevent_errno_name(int error) {
    switch (error) {
    case EADDRINUSE: return "EADDRINUSE";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECONNRESET: return "ECONNRESET";
    case ECONNABORTED: return "ECONNABORTED";
    case EPIPE: return "EPIPE";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ENETUNREACH: return "ENETUNREACH";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case ENOBUFS: return "ENOBUFS";
    case ENOMEM: return "ENOMEM";
    case EINVAL: return "EINVAL";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EBADF: return "EBADF";
    case EINTR: return "EINTR";
    case EAGAIN: return "EAGAIN";
    case EINPROGRESS: return "EINPROGRESS";
    case ENOTCONN: return "ENOTCONN";
    case EPROTO: return "EPROTO";
    case EMSGSIZE: return "EMSGSIZE";
    case ENOTSOCK: return "ENOTSOCK";
    default: return NULL;
    }
}
