// GPT token + position embedding: x[b, t] = wte[token[b, t]] + wpe[t].
#include <algorithm>
#include <vector>

#include "models/gpt_layers.h"
#include "models/init.h"
#include "models/sharded_param.h"
#include "runtime/comm/tensor_parallel_ops.h"

namespace troupe {

namespace {
// Position ids 0..T-1 repeated for each sample: [B * T].
Tensor position_ids(std::int64_t batch, std::int64_t t) {
  Tensor ids = Tensor::empty({batch * t}, DType::i32);
  std::int32_t* p = ids.i32();
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t i = 0; i < t; ++i) p[b * t + i] = static_cast<std::int32_t>(i);
  return ids;
}


// Under tensor parallelism this shard's rows of wte are tokens [lo, lo + V/T): its ids for `tokens`
// (0 for a token another shard holds) and which rows are its own.
struct LocalTokens {
  Tensor ids;               // i32 [n]
  std::vector<char> mine;   // [n]
};

LocalTokens local_tokens(const Tensor& tokens, std::int64_t vocab, int shards, int rank) {
  const std::int64_t n = tokens.numel(), rows = vocab / shards, lo = rows * rank;
  LocalTokens out{Tensor::empty({n}, DType::i32), std::vector<char>(static_cast<std::size_t>(n))};
  const std::int32_t* tok = tokens.i32();
  std::int32_t* ids = out.ids.i32();
  for (std::int64_t i = 0; i < n; ++i) {
    if (tok[i] < 0 || tok[i] >= vocab)
      throw Error(ErrorKind::kInput, "token id " + std::to_string(tok[i]) + " at position " + std::to_string(i) +
                                         " is outside [0, " + std::to_string(vocab) + ") (model.vocab_size)");
    const bool mine = tok[i] >= lo && tok[i] < lo + rows;
    out.mine[static_cast<std::size_t>(i)] = mine;
    ids[i] = mine ? static_cast<std::int32_t>(tok[i] - lo) : 0;
  }
  return out;
}

// Rows of x [n, c] that belong to another shard set to zero.
void zero_others(const Tensor& x, const std::vector<char>& mine, std::int64_t c) {
  float* p = x.f32();
  for (std::size_t i = 0; i < mine.size(); ++i)
    if (!mine[i]) std::fill(p + static_cast<std::int64_t>(i) * c, p + (static_cast<std::int64_t>(i) + 1) * c, 0.0f);
}
}  // namespace

bool sequence_split(comm::TensorGroup group, std::int64_t tokens) {
  if (!group.sequence_split()) return false;
  if (tokens % group.size() != 0)
    throw Error(ErrorKind::kShape, "a sequence of " + std::to_string(tokens) + " tokens cannot be split over " +
                                       std::to_string(group.size()) +
                                       " tensor shards (parallel.sequence_parallel = true): use sequences of a "
                                       "multiple of parallel.tensor tokens");
  return true;
}

GptEmbedding::GptEmbedding(ParamSet& params, const GptShape& shape, std::uint64_t seed, comm::TensorGroup group)
    : shape_(shape), group_(group) {
  auto normal = [seed](const Tensor& t, const std::string& n) { init_normal(t, seed, n, 0.02); };
  // Vocabulary-parallel: shard t holds the rows of tokens [t V/T, (t + 1) V/T).
  wte_ = add_sharded(params, "transformer.wte.weight", {shape.vocab_size, shape.n_embd},
                     TensorSplit{0, 1, group.size(), group.rank()}, normal);
  wpe_ = add_sharded(params, "transformer.wpe.weight", {shape.block_size, shape.n_embd}, TensorSplit{}, normal);
}

Tensor GptEmbedding::forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& tokens) {
  TROUPE_CHECK(tokens.ndim() == 2, "tokens must be [B, T], got ", shape_str(tokens.shape()));
  const std::int64_t b = tokens.dim(0), t = tokens.dim(1), c = shape_.n_embd;
  if (t > shape_.block_size)
    throw Error(ErrorKind::kShape, "sequence of " + std::to_string(t) + " tokens exceeds model.block_size " +
                                       std::to_string(shape_.block_size));
  Tensor y = be.empty({b, t, c});
  Tensor ids = position_ids(b, t);
  if (!group_.split()) {
    Tensor pos = be.empty({b, t, c});
    be.embedding_forward(ids, wpe_->value, pos.view({b * t, c}));
    be.embedding_forward(tokens.view({b * t}), wte_->value, y.view({b * t, c}));
    be.add_inplace(y, pos);
    ctx.saved = {tokens, ids};
    return y;
  }
  // Each shard looks up the tokens it holds (zeros for the others'), and g sums the shards' rows; under
  // sequence parallelism a reduce-scatter sums only this shard's part of each sample's tokens.
  LocalTokens local = local_tokens(tokens, shape_.vocab_size, group_.size(), group_.rank());
  be.embedding_forward(local.ids, wte_->value, y.view({b * t, c}));
  zero_others(y, local.mine, c);
  Tensor mine = Tensor::empty({b * t}, DType::i32);
  for (std::int64_t i = 0; i < b * t; ++i) mine.i32()[i] = local.mine[static_cast<std::size_t>(i)];
  ctx.saved = {tokens, ids, local.ids, mine};
  const std::int64_t tl = sequence_split(group_, t) ? t / group_.size() : t;
  Tensor pos = be.empty({b, tl, c});
  if (tl == t) {
    comm::g_forward(group_, y.span_f32());
  } else {
    Tensor part = be.empty({b, tl, c});
    comm::scatter_forward(group_, y.span_f32(), part.span_f32(), b);
    y = part;
    ids = Tensor::empty({b * tl}, DType::i32);  // this shard's positions
    for (std::int64_t s = 0; s < b; ++s)
      for (std::int64_t i = 0; i < tl; ++i) ids.i32()[s * tl + i] = static_cast<std::int32_t>(group_.rank() * tl + i);
  }
  be.embedding_forward(ids, wpe_->value, pos.view({b * tl, c}));
  be.add_inplace(y, pos);
  return y;
}

Tensor GptEmbedding::backward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& dy) {
  const Tensor& tokens = ctx.saved.at(0);
  const Tensor& ids = ctx.saved.at(1);
  const std::int64_t n = tokens.numel(), c = shape_.n_embd;
  Tensor d = dy.view({dy.numel() / c, c});
  if (d.dim(0) != n) {  // sequence parallelism: every token's gradient (the scatter's backward)
    Tensor whole = be.empty({n, c});
    comm::scatter_backward(group_, d.span_f32(), whole.span_f32(), tokens.dim(0));
    d = whole;
  }
  be.embedding_backward(ids, d, wpe_->grad);
  if (!group_.split()) {
    be.embedding_backward(tokens.view({n}), d, wte_->grad);
  } else {
    // g's backward is the identity; rows of tokens another shard holds add nothing here.
    const std::int32_t* mine = ctx.saved.at(3).i32();
    if (d.raw() == dy.raw()) d = d.clone();
    zero_others(d, std::vector<char>(mine, mine + n), c);
    be.embedding_backward(ctx.saved.at(2), d, wte_->grad);
  }
  ctx.clear();
  return {};
}

double GptEmbedding::flops_per_row() const { return 4.0 * shape_.n_embd; }

}  // namespace troupe
