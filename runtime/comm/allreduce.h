// Owns allreduce(): the one entry point that picks the allreduce algorithm by buffer size, and the measured crossover it picks by.
//
//   algorithm             steps                     bytes sent per rank     best for
//   ring (ring.h)         2(n - 1)                  2(n - 1)/n · B          large buffers
//   halving-doubling      2·log2 p (+2, n ≠ 2^k)    2(p - 1)/p · B (+B)     small buffers
//   (halving_doubling.h)
//   shared memory         3 per piece, no hand-offs  none: 1 copy in, 1 out     large buffers, ranks of one
//   (shared_memory_allreduce.h)                                                 host (Transport::shared_window)
//
// kAuto takes halving-doubling below kAllreduceCrossoverBytes and the ring from there on; where the
// ring would run and the transport lends a SharedWindow, it runs the shared-memory allreduce
// instead, which computes the ring's sums bit for bit. The decision
// depends only on (bytes, ranks), which every rank agrees on, so all ranks run the same algorithm.
// Each algorithm is deterministic (bitwise equal on every rank and every run); their float results
// differ from each other in the last bits, so a caller who needs the same bits for two buffer sizes
// names the algorithm. Integer types (wrapping sums, troupe::ExactSum) give the same bits either way.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

#include "runtime/comm/halving_doubling.h"
#include "runtime/comm/ring.h"
#include "runtime/comm/transport.h"

namespace troupe::comm {

// kRing always sends messages (also over a transport with a shared window); kSharedMemory needs a
// transport with a window and throws troupe::Error(kConfig) otherwise.
enum class AllreduceAlgo { kAuto, kRing, kHalvingDoubling, kSharedMemory };

// Buffers of at least this many bytes take the ring under kAuto. Measured 2026-11-28 on the 2-core
// machine (median ms per allreduce, `troupe bench allreduce --algo ring|hd`, README "Collectives"),
// 3, 4 and 8 ranks over both transports: halving-doubling is faster in 16 of 18 cases up to 256 KiB
// and in 5 of 6 at 1 MiB; the ring is faster in 5 of 6 at 4 MiB (by up to 1.7x: it streams segments).
inline constexpr std::size_t kAllreduceCrossoverBytes = std::size_t{1} << 20;

// What kAuto runs for a buffer of `bytes` over `ranks` ranks (never kAuto).
AllreduceAlgo choose_allreduce(std::size_t bytes, int ranks);

// "auto", "ring", "hd", "shm"; throws troupe::Error(kUsage) naming the choices for anything else.
AllreduceAlgo parse_allreduce_algo(std::string_view name);
std::string_view allreduce_algo_name(AllreduceAlgo algo);

// In place: on return every rank's `data` is the elementwise sum of all ranks' inputs, bitwise equal on
// every rank. T: float, double, std::int64_t or __int128 (troupe::ExactSum; integers wrap). All ranks
// pass the same length and algorithm. `ring` tunes the ring's segments (tests make them small).
template <class T>
void allreduce(Transport& transport, std::span<T> data, AllreduceAlgo algo = AllreduceAlgo::kAuto,
               RingOptions ring = {});

inline void allreduce(Transport& t, std::span<float> data, AllreduceAlgo algo = AllreduceAlgo::kAuto,
                      RingOptions ring = {}) {
  allreduce<float>(t, data, algo, ring);
}

}  // namespace troupe::comm
