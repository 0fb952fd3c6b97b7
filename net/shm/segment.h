// Owns one rank's shared-memory segment: its layout (header, doorbells, one ring per sending rank), creating it as an anonymous memfd, and mapping a peer's through /proc/PID/fd.
//
// Each rank creates one segment holding the rings it receives on: ring s carries rank s's messages
// to this rank (s's own index is unused: a send to oneself never touches shared memory). Segments
// are memfds (memfd_create), which have no name in /dev/shm or anywhere else: the memory lives
// exactly as long as some process maps it or holds the descriptor, so no exit — SIGKILL included —
// can leave anything behind. A peer maps it by opening /proc/<creator's pid>/fd/<fd>, which the
// kernel allows only to processes that may inspect the creator (same user, ptrace read access); the
// (pid, fd) pair travels over the authenticated TCP link (Invite), so only ranks of the job learn it.
//
// Layout (all offsets multiples of 64; slot payloads start 64-aligned):
//   SegmentHeader                     magic, geometry, state, the two doorbells
//   RingControl[ranks]                head (producer's counter), tail (consumer's), own cache lines
//   WindowControl                     the owner's progress counters of the shared window (shm_window.h)
//   ring s = slots × (SlotHeader + slot_bytes payload), for s in 0..ranks-1
//   staging = pieces × piece_bytes    the owner's staging region of the shared window (none if 0 pieces)
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

#include "net/shm/doorbell.h"

namespace troupe::net::shm {

inline constexpr std::uint64_t kSegmentMagic = 0x3130'4d48'5345'5254ULL;  // "TRESHM01"

// What a segment's owner says about itself; peers read it, only the owner writes state.
struct SegmentHeader {
  std::uint64_t magic = 0;
  std::uint32_t ranks = 0;
  std::uint32_t owner = 0;  // the rank that receives on these rings
  std::uint64_t slots = 0;
  std::uint64_t slot_bytes = 0;
  std::uint64_t bytes = 0;  // of the whole segment
  enum : std::uint32_t { kOpen = 0, kClosed = 1, kAborted = 2 };
  std::atomic<std::uint32_t> state{kOpen};  // kClosed: the owner destroyed its transport in order
  Doorbell data_bell;   // rung by a producer after writing a slot into one of these rings
  Doorbell space_bell;  // rung by a consumer after freeing a slot of a ring the owner writes to
};

struct alignas(64) RingControl {
  alignas(64) std::atomic<std::uint64_t> head{0};
  alignas(64) std::atomic<std::uint64_t> tail{0};
  // Set by the producer while it holds data the ring had no room for; a consumer that frees a slot
  // then rings the producer's space doorbell (and only then: an idle producer is not woken per slot).
  alignas(64) std::atomic<std::uint32_t> producer_waiting{0};
};

// The owner's counters of the shared window (comm::SharedWindow), each on its own cache line: only the
// owner writes them, every peer polls them.
struct WindowControl {
  struct alignas(64) Counter {
    std::atomic<std::uint64_t> value{0};
  };
  Counter counters[4];
};

// Precedes each slot's payload: which message this slot belongs to and which part of it.
struct alignas(64) SlotHeader {
  std::uint32_t tag = 0;
  std::uint64_t total = 0;   // bytes of the whole message
  std::uint64_t offset = 0;  // where this slot's payload starts in it
};

// Byte offsets within a segment, from its geometry alone (pure; tested).
struct SegmentLayout {
  int ranks = 0;
  std::size_t slots = 0;
  std::size_t slot_bytes = 0;  // a multiple of 64
  std::size_t pieces = 0;      // of the staging region (0: none)
  std::size_t piece_bytes = 0;  // a multiple of 64

  std::size_t control_offset(int sender) const;
  std::size_t window_offset() const;
  std::size_t staging_offset(std::size_t piece) const;
  std::size_t slot_stride() const { return sizeof(SlotHeader) + slot_bytes; }
  std::size_t slot_offset(int sender, std::size_t slot) const;
  std::size_t bytes() const;
};

// One mapping of a segment: this rank's own (created) or a peer's (opened).
class Segment {
 public:
  // A fresh segment for `owner`, zeroed and with its header written. Error(kIo) when memfd_create,
  // ftruncate or mmap fail (e.g. not enough memory: the message says how much was asked for).
  static Segment create(const SegmentLayout& layout, int owner);
  // Maps the segment of the process `pid` held at descriptor `fd`, expecting `layout` and `owner`.
  // Error(kIo) naming the rank when it cannot be opened or its header disagrees.
  static Segment open_peer(const SegmentLayout& layout, int owner, int pid, int fd);

  Segment() = default;
  Segment(Segment&&) noexcept;
  Segment& operator=(Segment&&) noexcept;
  ~Segment();

  SegmentHeader& header() const { return *reinterpret_cast<SegmentHeader*>(base_); }
  RingControl& control(int sender) const { return *reinterpret_cast<RingControl*>(base_ + layout_.control_offset(sender)); }
  SlotHeader& slot_header(int sender, std::size_t slot) const {
    return *reinterpret_cast<SlotHeader*>(base_ + layout_.slot_offset(sender, slot));
  }
  std::byte* slot_payload(int sender, std::size_t slot) const {
    return base_ + layout_.slot_offset(sender, slot) + sizeof(SlotHeader);
  }
  WindowControl& window() const { return *reinterpret_cast<WindowControl*>(base_ + layout_.window_offset()); }
  std::byte* staging(std::size_t piece) const { return base_ + layout_.staging_offset(piece); }
  int fd() const { return fd_; }
  // Closes the descriptor (the mapping stays): once every peer has mapped the segment.
  void close_fd();

 private:
  SegmentLayout layout_;
  std::byte* base_ = nullptr;
  int fd_ = -1;
};

// This host as the kernel knows it: the boot id and this process's pid namespace. Two ranks can share
// memory through /proc/PID/fd only if both agree.
std::string host_identity();

}  // namespace troupe::net::shm
