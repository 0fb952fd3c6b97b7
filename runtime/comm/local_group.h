// Owns LocalGroup: collectives among ranks that are threads of one process, reading each other's buffers by reference (no messages, no copies in between).
//
// The Transport collectives (ring.h, halving_doubling.h) move every byte as a copied message — right for
// processes, and what the in-process transport imitates so tests cannot pass by aliasing. Ranks that share
// an address space (data-parallel replicas as threads or actors of one process) can do better, as
// OpenMPI's and NCCL's shared-memory paths do: each rank publishes its buffer, reduces its own slice
// straight from everyone's buffers, then copies the other slices straight from their owners.
//
//   allreduce   n ranks, B bytes, slices ring_chunk(count, n, r). 3 barriers.
//               publish   every rank stores its buffer's address and length; barrier.
//               reduce    rank r sums slice r over all buffers in rank order ((x_0 + x_1) + x_2) + …,
//                         in blocks of 16 KiB through a scratch block, into its own buffer; barrier.
//                         Reads B, writes B/n per rank.
//               gather    rank r copies every other slice o from rank o's buffer; barrier (nobody
//                         returns, and reuses its buffer, while others still read it).
//                         Reads and writes (n - 1)/n · B per rank.
//               Memory traffic per rank ≈ 3B, against ≈ 8B for the ring over copying messages.
//
// Determinism: every element is summed once, by its slice's owner, in rank order (the same order for
// every element), then copied: bitwise identical on every rank and every run. The order differs from
// the ring's and halving-doubling's. Integer types wrap (elementwise.h).
//
// Barriers spin briefly (a sleeping thread takes ~45 µs to wake here), then sleep on a condition
// variable. Failure model, as InprocWorld: kill(rank) marks a crashed rank, and every rank waiting in
// or entering a collective throws troupe::Error(kIo) naming it; a barrier that does not fill within
// the timeout throws naming the ranks that did not arrive; ranks passing different lengths all throw
// naming the lengths. After any throw the group is broken for good (make a new one).
#pragma once

#include <chrono>
#include <memory>
#include <span>

namespace troupe::comm {

class LocalGroup {
 public:
  // `ranks` (>= 1) threads; a barrier gives up after `timeout` (> 0).
  LocalGroup(int ranks, std::chrono::milliseconds timeout);
  ~LocalGroup();
  LocalGroup(const LocalGroup&) = delete;
  LocalGroup& operator=(const LocalGroup&) = delete;

  int size() const;

  // Called by rank `rank`'s thread (one thread per rank, each rank calling the same collectives in the
  // same order). In place: on return every rank's `data` is the elementwise sum of all ranks' inputs,
  // bitwise equal on every rank. T: float, double, std::int64_t, __int128 (integers wrap).
  template <class T>
  void allreduce(int rank, std::span<T> data);

  // Marks `rank` dead: every waiting and future collective on every rank throws, naming it. Any thread.
  void kill(int rank);
  // A step abandoned on purpose: every waiting and future collective throws comm::GroupAborted until
  // reform(), which the caller calls once no rank is inside a collective (barrier counts start again).
  void abort();
  void reform();

  struct State;

 private:
  void barrier(int rank, const char* phase, bool abortable);
  std::unique_ptr<State> state_;
};

}  // namespace troupe::comm
