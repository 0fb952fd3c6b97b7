// TensorSplit: slicing a whole tensor into a shard's part and placing a shard's part back.
#include "runtime/tensor_split.h"

#include <cstring>

#include "runtime/error.h"

namespace troupe {

namespace {
// The whole tensor as [outer, dim, inner] elements, and the shard's piece along dim.
struct Strides {
  std::int64_t outer = 1, dim = 1, inner = 1, piece = 1;
};

Strides strides_of(const Shape& whole, const TensorSplit& s) {
  TROUPE_CHECK(s.dim >= 0 && s.dim < static_cast<int>(whole.size()), "split dim ", s.dim, " of ", shape_str(whole));
  Strides st;
  for (int i = 0; i < s.dim; ++i) st.outer *= whole[static_cast<std::size_t>(i)];
  st.dim = whole[static_cast<std::size_t>(s.dim)];
  for (std::size_t i = static_cast<std::size_t>(s.dim) + 1; i < whole.size(); ++i) st.inner *= whole[i];
  TROUPE_CHECK(st.dim % (static_cast<std::int64_t>(s.groups) * s.shards) == 0, "dimension ", st.dim, " of ",
               shape_str(whole), " is not ", s.groups, " groups x ", s.shards, " shards");
  st.piece = st.dim / s.groups / s.shards;
  return st;
}

// Copies between whole and shard, one contiguous run (a piece of one group of one outer row) at a time.
template <class Copy>
void for_each_run(const Shape& whole, const TensorSplit& s, Copy copy) {
  const Strides st = strides_of(whole, s);
  const std::int64_t run = st.piece * st.inner;
  std::int64_t shard_at = 0;
  for (std::int64_t o = 0; o < st.outer; ++o)
    for (std::int64_t g = 0; g < s.groups; ++g) {
      const std::int64_t row = g * s.shards * st.piece + s.index * st.piece;
      copy((o * st.dim + row) * st.inner, shard_at, run);
      shard_at += run;
    }
}
}  // namespace

Shape shard_shape(const Shape& whole, const TensorSplit& split) {
  if (!split.split()) return whole;
  Shape out = whole;
  const Strides st = strides_of(whole, split);
  out[static_cast<std::size_t>(split.dim)] = st.piece * split.groups;
  return out;
}

Tensor shard_of(const Tensor& whole, const TensorSplit& split) {
  if (!split.split()) return whole.clone();
  Tensor out = Tensor::empty(shard_shape(whole.shape(), split));
  const float* src = whole.f32();
  float* dst = out.f32();
  for_each_run(whole.shape(), split, [&](std::int64_t w, std::int64_t s, std::int64_t n) {
    std::memcpy(dst + s, src + w, static_cast<std::size_t>(n) * sizeof(float));
  });
  return out;
}

void place_shard(const Tensor& whole, const Tensor& shard, const TensorSplit& split) {
  if (!split.split()) {
    whole.copy_from(shard);
    return;
  }
  TROUPE_CHECK(shard.shape() == shard_shape(whole.shape(), split), "shard ", shape_str(shard.shape()), " of ",
               shape_str(whole.shape()));
  const float* src = shard.f32();
  float* dst = whole.f32();
  for_each_run(whole.shape(), split, [&](std::int64_t w, std::int64_t s, std::int64_t n) {
    std::memcpy(dst + w, src + s, static_cast<std::size_t>(n) * sizeof(float));
  });
}

}  // namespace troupe
