// Owns the byte form of a TrainingState that one process sends another: a restarted data-parallel replica
// takes its parameters, optimizer state and step live from a healthy peer this way (no checkpoint read).
//
// Layout, little-endian, every count an unsigned 64-bit word:
//   "TRPSTATE" (8 bytes), step (i64),
//   tensor count, then per tensor: name length, name, dtype (u64), rank, dims (i64 each), byte count, bytes,
//   optimizer global step (i64), parameter count, then per parameter: name length, name, step (i64), state
//   tensor count, then each as above.
// The receiver always checks every length against what is left: a short or foreign buffer is
// troupe::Error(kIo) naming `source`, never a read past the end.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "runtime/checkpoint/training_state.h"

namespace troupe {

std::vector<std::byte> state_to_bytes(const TrainingState& state);
TrainingState state_from_bytes(std::span<const std::byte> bytes, const std::string& source);

}  // namespace troupe
