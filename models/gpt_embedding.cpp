// GPT token + position embedding: x[b, t] = wte[token[b, t]] + wpe[t].
#include <vector>

#include "models/gpt_layers.h"
#include "models/init.h"

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
}  // namespace

GptEmbedding::GptEmbedding(ParamSet& params, const GptShape& shape, std::uint64_t seed) : shape_(shape) {
  wte_ = &params.add("transformer.wte.weight", {shape.vocab_size, shape.n_embd});
  wpe_ = &params.add("transformer.wpe.weight", {shape.block_size, shape.n_embd});
  init_normal(wte_->value, seed, wte_->name, 0.02);
  init_normal(wpe_->value, seed, wpe_->name, 0.02);
}

Tensor GptEmbedding::forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& tokens) {
  TROUPE_CHECK(tokens.ndim() == 2, "tokens must be [B, T], got ", shape_str(tokens.shape()));
  const std::int64_t b = tokens.dim(0), t = tokens.dim(1), c = shape_.n_embd;
  if (t > shape_.block_size)
    throw Error(ErrorKind::kShape, "sequence of " + std::to_string(t) + " tokens exceeds model.block_size " +
                                       std::to_string(shape_.block_size));
  Tensor y = be.empty({b, t, c});
  Tensor pos = be.empty({b, t, c});
  Tensor ids = position_ids(b, t);
  be.embedding_forward(tokens.view({b * t}), wte_->value, y.view({b * t, c}));
  be.embedding_forward(ids, wpe_->value, pos.view({b * t, c}));
  be.add_inplace(y, pos);
  ctx.saved = {tokens, ids};
  return y;
}

Tensor GptEmbedding::backward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& dy) {
  const Tensor& tokens = ctx.saved.at(0);
  const Tensor& ids = ctx.saved.at(1);
  const std::int64_t n = tokens.numel(), c = shape_.n_embd;
  be.embedding_backward(tokens.view({n}), dy.view({n, c}), wte_->grad);
  be.embedding_backward(ids, dy.view({n, c}), wpe_->grad);
  ctx.clear();
  return {};
}

double GptEmbedding::flops_per_row() const { return 4.0 * shape_.n_embd; }

}  // namespace troupe
