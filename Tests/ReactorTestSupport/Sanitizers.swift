// Whether this test process was built with a sanitizer, for the few tests whose load has
// to shrink under one (everything runs 5-15x slower under ThreadSanitizer).
import Glibc

/// True when ThreadSanitizer's runtime is linked in (`swift test --sanitize=thread`).
public let isThreadSanitizerBuild = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__tsan_init") != nil
