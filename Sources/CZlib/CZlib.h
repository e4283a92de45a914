// CZlib: the system zlib (zlib1g-dev) for ReactorBench, which writes HdrHistogram's
// compressed V2 encoding: its payload is a zlib stream (what Java's Deflater writes and
// every HdrHistogram reader inflates). Foundation on Linux has no compression API.
#include <zlib.h>
