// Owns SharedWindow: memory every rank of a group maps and reads directly, with per-rank progress counters, which a transport between ranks of one host lends to the collectives.
//
// A message transport copies every byte twice (into its buffer, out again) and hands a ring's
// segment over p - 1 times per phase. Ranks that share memory need neither: each rank stages its
// input where all can read it, each reduces one part reading every rank's staged input in place,
// and each copies the finished parts out (runtime/comm/shared_memory_allreduce.h). The window is
// what such an algorithm needs from the transport, and nothing else:
//
//  * staging(r): a region of rank r's, `pieces()` × `piece_bytes()` bytes, that every rank of the
//    group may read and write (its owner writes its input there; the algorithm decides who writes
//    what when, through the counters);
//  * counters: kCounters monotonically increasing 64-bit values per rank. Only their owner
//    publishes them; any rank may read them and wait for them. A publish orders every write the
//    publisher made before it (release) for a rank that sees the new value (acquire).
//
// A wait never hangs: it throws troupe::Error(kIo) naming the peer when that peer is dead (the group
// is then broken, as for a recv), closed its transport, or published nothing within the
// transport's timeout. A transport offers a window only when every rank of its group shares it
// (Transport::shared_window()); the counters keep counting across collectives, so a collective
// starts where the last one on this window ended.
#pragma once

#include <cstddef>
#include <cstdint>

namespace troupe::comm {

class SharedWindow {
 public:
  static constexpr int kCounters = 4;

  virtual ~SharedWindow() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // How many staging pieces each rank has (>= 2), and the bytes of each (a multiple of 64).
  virtual std::size_t pieces() const = 0;
  virtual std::size_t piece_bytes() const = 0;
  // Piece `piece` (< pieces()) of rank `owner`'s staging region: piece_bytes() bytes, 64-aligned.
  virtual std::byte* staging(int owner, std::size_t piece) = 0;

  // This rank's counter `counter` (< kCounters) becomes `value` (never less than before); peers
  // waiting for it are woken.
  virtual void publish(int counter, std::uint64_t value) = 0;
  // Rank `owner`'s counter `counter` as last published (acquire).
  virtual std::uint64_t published(int owner, int counter) const = 0;
  // Returns once rank `owner`'s counter `counter` is at least `value`; `owner` < 0 waits for every
  // rank's. Throws troupe::Error(kIo) naming the peer (see above); `what` names the collective.
  virtual void wait_for(int owner, int counter, std::uint64_t value, const char* what) = 0;
};

}  // namespace troupe::comm
