#define _GNU_SOURCE
#include "CReactorSystem.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <time.h>

int csystem_socket(int domain, int type) {
    return socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

int csystem_accept(int listen_fd, struct sockaddr *address, socklen_t *length) {
    return accept4(listen_fd, address, length, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

ssize_t csystem_send3(int fd,
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

struct csystem_recv_headers {
    csystem_datagram *datagrams;
    unsigned int count;
    /// The iov_len every slot is armed with: the capacity of the last receive.
    size_t capacity;
    struct mmsghdr messages[CSYSTEM_DATAGRAM_BATCH_MAX];
    struct iovec parts[CSYSTEM_DATAGRAM_BATCH_MAX];
    union {
        char space[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } controls[CSYSTEM_DATAGRAM_BATCH_MAX];
};

/// The two fields the kernel overwrites in a header it fills (the sender's length and the
/// control data's), put back before the header is used again.
static void rearm(csystem_recv_headers *headers, unsigned int i) {
    headers->messages[i].msg_hdr.msg_namelen = sizeof headers->datagrams[i].address;
    headers->messages[i].msg_hdr.msg_controllen = sizeof headers->controls[i].space;
}

csystem_recv_headers *csystem_recv_headers_create(csystem_datagram *datagrams, unsigned int count) {
    csystem_recv_headers *headers = calloc(1, sizeof *headers);
    if (!headers) return NULL;
    if (count > CSYSTEM_DATAGRAM_BATCH_MAX) count = CSYSTEM_DATAGRAM_BATCH_MAX;
    headers->datagrams = datagrams;
    headers->count = count;
    headers->capacity = count > 0 ? datagrams[0].capacity : 0;
    for (unsigned int i = 0; i < count; i++) {
        headers->parts[i].iov_base = datagrams[i].data;
        headers->parts[i].iov_len = headers->capacity;
        struct msghdr *header = &headers->messages[i].msg_hdr;
        header->msg_name = &datagrams[i].address;
        header->msg_iov = &headers->parts[i];
        header->msg_iovlen = 1;
        header->msg_control = headers->controls[i].space;
        rearm(headers, i);
    }
    return headers;
}

void csystem_recv_headers_destroy(csystem_recv_headers *headers) {
    free(headers);
}

int csystem_recv_batch(int fd, csystem_recv_headers *headers, unsigned int count, size_t capacity) {
    if (count > headers->count) count = headers->count;
    // Sockets sharing the slots may ask for different sizes; only a change of size
    // touches every slot.
    if (capacity != headers->capacity) {
        for (unsigned int i = 0; i < headers->count; i++) headers->parts[i].iov_len = capacity;
        headers->capacity = capacity;
    }
    int received = recvmmsg(fd, headers->messages, count, MSG_DONTWAIT | MSG_TRUNC, NULL);
    for (int i = 0; i < received; i++) {
        csystem_datagram *datagram = &headers->datagrams[i];
        struct msghdr *header = &headers->messages[i].msg_hdr;
        datagram->address_length = header->msg_namelen;
        datagram->length = headers->messages[i].msg_len;
        // MSG_TRUNC in the flags argument already reports the real length; the flag on
        // the message covers kernels that only set that.
        if ((header->msg_flags & MSG_TRUNC) && datagram->length <= capacity) {
            datagram->length = (unsigned int)capacity + 1;
        }
        datagram->segment_size = 0;
        for (struct cmsghdr *control = CMSG_FIRSTHDR(header); control; control = CMSG_NXTHDR(header, control)) {
            if (control->cmsg_level == SOL_UDP && control->cmsg_type == UDP_GRO) {
                int size;
                memcpy(&size, CMSG_DATA(control), sizeof size);
                if (size > 0) datagram->segment_size = (unsigned int)size;
            }
        }
        rearm(headers, (unsigned int)i);
    }
    return received;
}

int csystem_enable_udp_gro(int fd) {
    int on = 1;
    return setsockopt(fd, SOL_UDP, UDP_GRO, &on, sizeof on);
}

/// Datagrams this long or shorter may share a UDP_SEGMENT send: under the IPv6 minimum
/// MTU less headers, so a segment never exceeds a path's MTU.
#define CSYSTEM_SEGMENT_MAX 1232
/// The kernel's UDP_MAX_SEGMENTS on older kernels.
#define CSYSTEM_SEGMENTS_MAX 64

static int same_destination(const csystem_datagram *a, const csystem_datagram *b) {
    if (a->address_length != b->address_length) return 0;
    // An IPv4 address (16 bytes) compared in two words: a memcmp call per datagram of a
    // batch was 18 instructions of an echoed datagram's ~400 (callgrind).
    if (a->address_length == sizeof(struct sockaddr_in)) {
        uint64_t x[2], y[2];
        memcpy(x, &a->address, sizeof x);
        memcpy(y, &b->address, sizeof y);
        return x[0] == y[0] && x[1] == y[1];
    }
    return memcmp(&a->address, &b->address, a->address_length) == 0;
}

int csystem_send_batch(int fd, const csystem_datagram *datagrams, unsigned int count, int *segment) {
    struct mmsghdr messages[CSYSTEM_DATAGRAM_BATCH_MAX];
    struct iovec parts[CSYSTEM_DATAGRAM_BATCH_MAX];
    union {
        char space[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } controls[CSYSTEM_DATAGRAM_BATCH_MAX];
    unsigned int carried[CSYSTEM_DATAGRAM_BATCH_MAX];
    if (count > CSYSTEM_DATAGRAM_BATCH_MAX) count = CSYSTEM_DATAGRAM_BATCH_MAX;
    if (count == 1) {
        const csystem_datagram *only = &datagrams[0];
        ssize_t sent = sendto(fd, only->data, only->length, MSG_DONTWAIT | MSG_NOSIGNAL,
                              only->address_length ? (const struct sockaddr *)&only->address : NULL,
                              only->address_length);
        return sent < 0 ? -1 : 1;
    }
    unsigned int used = 0;
    int segmented = 0;
    for (unsigned int i = 0; i < count;) {
        const csystem_datagram *first = &datagrams[i];
        // A run of equal-sized datagrams to one destination goes as one UDP_SEGMENT
        // (GSO) message: one trip through the stack, split into datagrams by the kernel.
        unsigned int run = 1;
        if (*segment && first->length > 0 && first->length <= CSYSTEM_SEGMENT_MAX) {
            while (i + run < count && run < CSYSTEM_SEGMENTS_MAX &&
                   datagrams[i + run].length == first->length && same_destination(first, &datagrams[i + run])) {
                run++;
            }
        }
        struct msghdr *header = &messages[used].msg_hdr;
        memset(header, 0, sizeof *header);
        for (unsigned int k = 0; k < run; k++) {
            parts[i + k].iov_base = datagrams[i + k].data;
            parts[i + k].iov_len = datagrams[i + k].length;
        }
        if (first->address_length) {
            header->msg_name = (void *)&first->address;
            header->msg_namelen = first->address_length;
        }
        header->msg_iov = &parts[i];
        header->msg_iovlen = run;
        if (run > 1) {
            header->msg_control = controls[used].space;
            header->msg_controllen = sizeof controls[used].space;
            struct cmsghdr *control = CMSG_FIRSTHDR(header);
            control->cmsg_level = SOL_UDP;
            control->cmsg_type = UDP_SEGMENT;
            control->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t size = (uint16_t)first->length;
            memcpy(CMSG_DATA(control), &size, sizeof size);
            segmented = 1;
        }
        carried[used++] = run;
        i += run;
    }
    int sent = sendmmsg(fd, messages, used, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent < 0 && segmented && carried[0] > 1 &&
        (errno == EIO || errno == EINVAL || errno == ENOPROTOOPT || errno == EOPNOTSUPP)) {
        // No segmentation offload here (an old kernel, a device without checksum
        // offload): send datagram by datagram from now on.
        *segment = 0;
        return csystem_send_batch(fd, datagrams, count, segment);
    }
    if (sent < 0) return -1;
    unsigned int total = 0;
    for (int m = 0; m < sent; m++) total += carried[m];
    return (int)total;
}

int csystem_eventfd(void) {
    return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

void csystem_set_thread_name(const char *name) {
    char truncated[16];
    strncpy(truncated, name, sizeof truncated - 1);
    truncated[sizeof truncated - 1] = 0;
    pthread_setname_np(pthread_self(), truncated);
}

int csystem_pin_thread(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

int csystem_cpu_count(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    int count = CPU_COUNT(&set);
    return count > 0 ? count : 1;
}

uint64_t csystem_monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

uint64_t csystem_coarse_monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

const char *csystem_errno_name(int error) {
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
