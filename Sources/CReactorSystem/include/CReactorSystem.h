// CReactorSystem: thin C helpers over Linux system calls, for what Swift spells poorly:
// flag-laden calls (socket and accept4 with SOCK_NONBLOCK|SOCK_CLOEXEC, sendmsg with
// MSG_NOSIGNAL), batches of datagrams (recvmmsg/sendmmsg with their control messages),
// clocks, thread names and errno names. Nothing here knows libevent (that is CEvent).
// Only Sources/ReactorCore/OS/ calls these functions.
#ifndef CSYSTEM_H
#define CSYSTEM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>

/// A non-blocking, close-on-exec socket.
int csystem_socket(int domain, int type);

/// accept4 with SOCK_NONBLOCK|SOCK_CLOEXEC: the accepted socket is ready for the reactor.
int csystem_accept(int listen_fd, struct sockaddr *address, socklen_t *length);

/// Sends up to three pieces in one syscall (sendmsg, MSG_NOSIGNAL so a closed peer
/// gives EPIPE instead of killing the process). Null or empty pieces are skipped.
ssize_t csystem_send3(int fd,
                     const void *first, size_t first_length,
                      const void *second, size_t second_length,
                      const void *third, size_t third_length);

/// One datagram of a batch, laid out so Swift reads it without calls. For a receive,
/// `data`/`capacity` name the slot to fill (read once, by csystem_recv_headers_create), and
/// the kernel fills `address` (the sender), `length` (the datagram's real size: more than
/// the receive's capacity means it was truncated) and
/// `segment_size` (nonzero when UDP_GRO coalesced several datagrams of that size, the
/// last maybe shorter, from one sender into the slot). For a send, `data`/`length` are
/// the payload and `address` the destination (`address_length` 0: the connected peer).
typedef struct {
    struct sockaddr_storage address;
    socklen_t address_length;
    unsigned int length;
    unsigned int segment_size;
    void *data;
    size_t capacity;
} csystem_datagram;

/// The most datagrams one csystem_recv_batch or csystem_send_batch call moves.
#define CSYSTEM_DATAGRAM_BATCH_MAX 64

/// The headers of a recvmmsg batch (message, iovec and control space per slot), set up
/// once for a set of slots: a receive then re-arms only the headers the kernel filled,
/// so a wakeup that finds one datagram does not pay for the whole batch.
typedef struct csystem_recv_headers csystem_recv_headers;

/// Headers for the first `count` (at most CSYSTEM_DATAGRAM_BATCH_MAX) of `datagrams`,
/// whose `data` they keep pointing at; armed with the first slot's `capacity`. NULL when
/// out of memory.
csystem_recv_headers *csystem_recv_headers_create(csystem_datagram *datagrams, unsigned int count);

/// Frees headers made by csystem_recv_headers_create (not the datagrams).
void csystem_recv_headers_destroy(csystem_recv_headers *headers);

/// recvmmsg without blocking into the headers' slots, each taking at most `capacity`
/// bytes, with MSG_TRUNC so a datagram longer than that reports its real length, and the
/// UDP_GRO segment size read from each message's control data. Returns how many slots
/// were filled (at most `count`, at most the headers' count), or -1 with errno.
int csystem_recv_batch(int fd, csystem_recv_headers *headers, unsigned int count, size_t capacity);

/// sendmmsg without blocking. Returns how many were sent from the front of the batch
/// (fewer than `count` means the next one failed: send the rest again to learn why), or
/// -1 with errno when the first failed. While `*segment` is nonzero, runs of equal-sized
/// datagrams (up to 1232 bytes) to one destination go as one UDP_SEGMENT message; a
/// kernel that refuses that clears `*segment` and the batch goes datagram by datagram.
int csystem_send_batch(int fd, const csystem_datagram *datagrams, unsigned int count, int *segment);

/// Asks the kernel to coalesce runs of datagrams from one sender into one receive
/// (UDP_GRO). Returns 0, or -1 with errno when the kernel cannot.
int csystem_enable_udp_gro(int fd);

/// A non-blocking, close-on-exec eventfd: the reactor's wake-up from other threads.
int csystem_eventfd(void);

/// Names the calling thread (visible in top -H and debuggers); at most 15 bytes are kept.
void csystem_set_thread_name(const char *name);
/// Pins the calling thread to one CPU; 0, or the error number pthread_setaffinity_np gives.
int csystem_pin_thread(int cpu);
/// The CPUs this process may run on (its affinity mask), at least 1.
int csystem_cpu_count(void);

/// Monotonic time in nanoseconds (CLOCK_MONOTONIC).
uint64_t csystem_monotonic_ns(void);

/// Coarse monotonic time in nanoseconds (CLOCK_MONOTONIC_COARSE: a few milliseconds of
/// resolution for a fraction of the cost), for idle-time stamps taken on every read.
uint64_t csystem_coarse_monotonic_ns(void);

/// The errno name ("ECONNREFUSED") for error messages, or NULL when not one we name.
const char *csystem_errno_name(int error);

#endif
