// CEvent: libevent's headers for Swift, and nothing else. Only
// Sources/ReactorCore/OS/EventLoop.swift imports it; helpers over plain system calls
// live in CReactorSystem.
#ifndef CEVENT_H
#define CEVENT_H

// System headers first: libevent's event-config.h defines _GNU_SOURCE, and glibc
// headers first seen under it would declare fd_set and friends differently from
// Swift's Glibc module, which breaks any Swift file that imports both.
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/select.h>
#include <sys/time.h>
#include <sys/socket.h>

#include <event2/event.h>

#endif
