// Owns the causal attention's shape contract every backend checks: qkv [B, T, 3C], heads of C / n_head.
#pragma once

#include <cstdint>

#include "runtime/error.h"
#include "runtime/tensor.h"

namespace troupe {

struct AttentionDims {
  std::int64_t batch, t, c, heads, hd;  // hd = c / heads, one head's width
};

// The dimensions of attention over `qkv`; a wrong rank, a width not a multiple of 3 or of n_head
// fails TROUPE_CHECK with the shape.
inline AttentionDims attention_dims(const Tensor& qkv, int n_head) {
  TROUPE_CHECK(qkv.ndim() == 3 && qkv.dim(2) % 3 == 0, "qkv must be [B, T, 3C], got ", shape_str(qkv.shape()));
  AttentionDims d{qkv.dim(0), qkv.dim(1), qkv.dim(2) / 3, n_head, 0};
  TROUPE_CHECK(n_head > 0 && d.c % n_head == 0, "n_embd ", d.c, " not divisible by n_head ", n_head);
  d.hd = d.c / n_head;
  return d;
}

}  // namespace troupe
