/*
 * server_common.h: the start-up every reference server does the same way, libevent or
 * not: the HOST PORT command line, the open-files limit, resolving the address to
 * listen on, and the "listening tcp|udp HOST:PORT NAME" line. Static functions,
 * included by one .c file each; nothing here runs per request.
 */
#ifndef SERVER_COMMON_H
#define SERVER_COMMON_H

#include <netdb.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/socket.h>

/* True when the command line is `PROGRAM HOST PORT`; otherwise prints the usage. */
__attribute__((unused)) static int usage_ok(int argc, char **argv) {
    if (argc == 3) return 1;
    fprintf(stderr, "usage: %s HOST PORT\n", argv[0]);
    return 0;
}

/* Raises the soft limit on open files to the hard limit. Returns the soft limit now
 * in force, 0 when it cannot be read. (The UDP server, one socket, does not call it.) */
__attribute__((unused)) static rlim_t raise_fd_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    return rl.rlim_cur;
}

/* The addresses to listen on for HOST and a numeric PORT, for sockets of `socktype`
 * (SOCK_STREAM or SOCK_DGRAM; freeaddrinfo them), or NULL after saying on stderr,
 * prefixed with `name`, why not. */
static struct addrinfo *resolve_listen_address(const char *name, const char *host, const char *port,
                                               int socktype) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = socktype,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *list;
    int rc = getaddrinfo(host, port, &hints, &list);
    if (rc != 0) {
        fprintf(stderr, "%s: cannot resolve %s: %s\n", name, host, gai_strerror(rc));
        return NULL;
    }
    return list;
}

/* Prints "listening tcp HOST:PORT NAME" ("udp" for a datagram socket; an IPv6 HOST in
 * brackets) for the address the socket `fd` is bound to, and flushes stdout. -1 if
 * getsockname fails. */
static int print_listening(int fd, const char *name) {
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    char host[NI_MAXHOST], port[NI_MAXSERV];
    int type = SOCK_STREAM;
    socklen_t type_len = sizeof type;
    if (getsockname(fd, (struct sockaddr *)&addr, &len) != 0) return -1;
    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_len);
    getnameinfo((struct sockaddr *)&addr, len, host, sizeof host, port, sizeof port,
                NI_NUMERICHOST | NI_NUMERICSERV);
    printf(addr.ss_family == AF_INET6 ? "listening %s [%s]:%s %s\n" : "listening %s %s:%s %s\n",
           type == SOCK_DGRAM ? "udp" : "tcp", host, port, name);
    fflush(stdout);
    return 0;
}

#endif
