// Owns the Dataset interface: deterministic batches by step index, for training and for evaluation.
//
// A batch is a pure function of (seed, step, batch size): any rank, stage or restarted actor that asks
// for step i gets the same samples, which is what lets parallel runs reproduce the single-device run.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/tensor.h"

namespace troupe {

struct Batch {
  Tensor inputs;   // i32 [B, T] tokens, or f32 [B, D] features
  Tensor targets;  // i32 [B, T] or [B]
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual Batch train_batch(std::int64_t step, int batch_size) const = 0;
  // Evaluation batch k of the held-out split (k from 0); a fixed sequence, the same every call.
  virtual Batch eval_batch(std::int64_t k, int batch_size) const = 0;
  // How many eval batches cover the held-out split once (for datasets evaluated in full), or 0.
  virtual std::int64_t eval_batches_full(int batch_size) const { return 0; }
  // Loss terms (rows) per sample: T for text, 1 for classification.
  virtual std::int64_t rows_per_sample() const = 0;
  virtual std::string describe() const = 0;
};

// splitmix64's output function applied to seed + (index + 1) * golden gamma: the documented hash
// behind every "shuffled" order (README, "Data order").
std::uint64_t order_hash(std::uint64_t seed, std::uint64_t index);

}  // namespace troupe
