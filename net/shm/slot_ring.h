// Owns the shared-memory transport's pure ring arithmetic: which slot a counter names, how many slots are free or full, and how a message is cut into slots.
//
// A ring between one producer (the sending rank) and one consumer (the receiving rank) has `slots`
// fixed-size slots. Both sides keep a monotonically increasing 64-bit counter in shared memory:
// `head` counts slots ever written (the producer's), `tail` slots ever consumed (the consumer's).
// Counters never wrap in practice (2^64 slots), so tail <= head <= tail + slots always holds, the
// slot a counter names is counter mod slots, and full and empty are told apart without a spare slot.
// These functions are plain arithmetic, tested in tests/test_shm_transport.cpp without shared memory.
#pragma once

#include <cstddef>
#include <cstdint>

namespace troupe::net::shm {

// The slot index of counter value `counter` in a ring of `slots` slots (> 0).
constexpr std::size_t slot_of(std::uint64_t counter, std::size_t slots) { return static_cast<std::size_t>(counter % slots); }

// Slots written and not yet consumed. Requires tail <= head.
constexpr std::uint64_t used_slots(std::uint64_t head, std::uint64_t tail) { return head - tail; }

// Slots the producer may write now. Requires tail <= head <= tail + slots.
constexpr std::uint64_t free_slots(std::uint64_t head, std::uint64_t tail, std::size_t slots) {
  return slots - used_slots(head, tail);
}

// Whether (head, tail) is a state a correct pair of peers can reach; a consumer that reads anything
// else from shared memory treats the peer as corrupt rather than trusting the counters.
constexpr bool valid_counters(std::uint64_t head, std::uint64_t tail, std::size_t slots) {
  return tail <= head && head - tail <= slots;
}

// A message of `total` bytes travels in this many slots of `slot_bytes` payload each: at least one
// (an empty message is one empty slot), otherwise ceil(total / slot_bytes).
constexpr std::uint64_t slots_for(std::uint64_t total, std::size_t slot_bytes) {
  return total == 0 ? 1 : (total + slot_bytes - 1) / slot_bytes;
}

// The payload bytes of the slot that starts at byte `offset` of a `total`-byte message.
constexpr std::size_t slot_payload(std::uint64_t total, std::uint64_t offset, std::size_t slot_bytes) {
  const std::uint64_t left = total - offset;
  return static_cast<std::size_t>(left < slot_bytes ? left : slot_bytes);
}

}  // namespace troupe::net::shm
