// Owns TensorSplit: how one tensor-parallel shard holds a slice of a parameter, and the slicing and gathering between a whole tensor and its shards.
//
// A split parameter keeps its nanoGPT name; only its shape shrinks. The split is along one dimension
// (`dim`) of the whole tensor, in `groups` equal blocks, each block cut into `shards` equal pieces, and
// shard t holds piece t of every block, in block order:
//   whole dim = [groups][shards][piece]   ->   shard t = [groups][piece] of t's pieces.
// groups = 1 is a plain contiguous split. GPT's fused qkv projection (c_attn, [3C, C]) has groups = 3:
// each of q, k and v is cut by heads, so a shard holds whole heads of all three, and its slice is again
// a valid qkv projection for n_head / T heads. Weight files always hold whole tensors (gather).
#pragma once

#include "runtime/tensor.h"

namespace troupe {

struct TensorSplit {
  int dim = -1;     // -1: replicated (every shard holds the whole tensor)
  int groups = 1;   // independent blocks along dim, each split into `shards` pieces
  int shards = 1;   // the tensor group's size T
  int index = 0;    // which shard this is, in [0, shards)
  bool split() const { return dim >= 0 && shards > 1; }
  friend bool operator==(const TensorSplit&, const TensorSplit&) = default;
};

// The shape a shard holds of a whole tensor of `whole` shape.
Shape shard_shape(const Shape& whole, const TensorSplit& split);
// This shard's slice of `whole` (a new tensor); a copy of whole when not split.
Tensor shard_of(const Tensor& whole, const TensorSplit& split);
// Writes `shard` (split.index's slice) into its place in `whole`.
void place_shard(const Tensor& whole, const Tensor& shard, const TensorSplit& split);

}  // namespace troupe
