// GPT-2 transformer block: x + attn(ln_1(x)), then + mlp(ln_2(.)), forward and backward.
#include <cmath>

#include "models/gpt_layers.h"
#include "models/init.h"
#include "models/sharded_param.h"
#include "models/tensor_parallel_linear.h"
#include "runtime/comm/tensor_parallel_ops.h"

namespace troupe {

namespace {
// Indexes into LayerCtx::saved for one block and one micro-batch.
enum Saved { kX, kLn1, kLn1Mean, kLn1Rstd, kQkv, kProbs, kAttnY, kXMid, kLn2, kLn2Mean, kLn2Rstd, kFc, kGelu, kCount };
constexpr float kLnEps = 1e-5f;
}  // namespace

GptBlock::GptBlock(ParamSet& params, const GptShape& shape, int index, std::uint64_t seed, comm::TensorGroup group)
    : name_("transformer.h." + std::to_string(index)), shape_(shape), group_(group) {
  const std::int64_t c = shape.n_embd;
  const int tp = group.size(), me = group.rank();
  // Column-parallel: split by outputs (rows of the [out, in] weight); c_attn's q, k and v each by heads.
  const TensorSplit qkv{0, 3, tp, me}, column{0, 1, tp, me}, row{1, 1, tp, me}, whole{};
  // GPT-2: residual projections scaled by 1/sqrt(2 n_layer) so the residual stream's variance stays put.
  const double residual_std = 0.02 / std::sqrt(2.0 * shape.n_layer);
  auto constant = [](float v) { return [v](const Tensor& t, const std::string&) { init_constant(t, v); }; };
  auto normal = [seed](double sd) { return [=](const Tensor& t, const std::string& n) { init_normal(t, seed, n, sd); }; };
  auto add = [&](const std::string& suffix, Shape s, const TensorSplit& split, const auto& init) -> Param* {
    return add_sharded(params, name_ + "." + suffix, s, split, init);
  };
  ln1_w_ = add("ln_1.weight", {c}, whole, constant(1.0f));
  ln1_b_ = add("ln_1.bias", {c}, whole, constant(0.0f));
  attn_w_ = add("attn.c_attn.weight", {3 * c, c}, qkv, normal(0.02));
  attn_b_ = add("attn.c_attn.bias", {3 * c}, qkv, constant(0.0f));
  proj_w_ = add("attn.c_proj.weight", {c, c}, row, normal(residual_std));
  proj_b_ = add("attn.c_proj.bias", {c}, whole, constant(0.0f));
  ln2_w_ = add("ln_2.weight", {c}, whole, constant(1.0f));
  ln2_b_ = add("ln_2.bias", {c}, whole, constant(0.0f));
  fc_w_ = add("mlp.c_fc.weight", {4 * c, c}, column, normal(0.02));
  fc_b_ = add("mlp.c_fc.bias", {4 * c}, column, constant(0.0f));
  fc_proj_w_ = add("mlp.c_proj.weight", {c, 4 * c}, row, normal(residual_std));
  fc_proj_b_ = add("mlp.c_proj.bias", {c}, whole, constant(0.0f));
  for (Param* p : {ln1_w_, ln1_b_, ln2_w_, ln2_b_}) p->sequence_partial = group.sequence_split();
}

std::vector<Param*> GptBlock::params() const {
  return {ln1_w_, ln1_b_, attn_w_, attn_b_, proj_w_, proj_b_, ln2_w_, ln2_b_, fc_w_, fc_b_, fc_proj_w_, fc_proj_b_};
}

Tensor GptBlock::forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& x) {
  TROUPE_CHECK(x.ndim() == 3 && x.dim(2) == shape_.n_embd, name_, ": input ", shape_str(x.shape()));
  // Sequence parallelism: x is this shard's part of every sample's tokens, [b, t / T, c]; the
  // LayerNorms and residual adds run on it alone (nl rows), the split linears and attention on all n.
  const std::int64_t tokens = mb.inputs.defined() ? mb.inputs.dim(-1) : x.dim(1);
  const bool seq = sequence_split(group_, tokens);
  const std::int64_t b = x.dim(0), t = seq ? x.dim(1) * group_.size() : x.dim(1), c = shape_.n_embd;
  const std::int64_t n = b * t, nl = b * x.dim(1), samples = seq ? b : 0;
  // This shard's heads and channels (all of them for T = 1). A row-parallel bias is added once, by shard 0.
  const std::int64_t tp = group_.size(), cl = c / tp, heads = shape_.n_head / tp;
  auto once = [&](Param* bias) { return group_.rank() == 0 ? bias->value : Tensor(); };
  // A LayerNorm's output as the column-parallel linear after it needs it: every token's (gathered).
  auto whole = [&](const Tensor& local) { return seq ? gather_sequence(be, group_, local, b) : local; };
  std::vector<Tensor>& s = ctx.saved;
  s.assign(kCount, Tensor());
  s[kX] = x;
  const Tensor x2 = x.view({nl, c});

  s[kLn1] = be.empty({nl, c});
  s[kLn1Mean] = be.empty({nl});
  s[kLn1Rstd] = be.empty({nl});
  be.layernorm_forward(x2, ln1_w_->value, ln1_b_->value, kLnEps, s[kLn1], s[kLn1Mean], s[kLn1Rstd]);

  s[kQkv] = be.empty({b, t, 3 * cl});
  be.linear_forward(whole(s[kLn1]), attn_w_->value, attn_b_->value, s[kQkv].view({n, 3 * cl}), mb.row_block);
  s[kProbs] = be.empty({b, heads, t, t});
  s[kAttnY] = be.empty({n, cl});
  be.attention_forward(s[kQkv], static_cast<int>(heads), s[kAttnY], s[kProbs]);

  s[kXMid] = be.empty({nl, c});
  row_parallel_forward(be, group_, s[kAttnY], proj_w_->value, once(proj_b_), s[kXMid], mb.row_block,
                       shape_.split_pieces(), samples);
  be.add_inplace(s[kXMid], x2);

  s[kLn2] = be.empty({nl, c});
  s[kLn2Mean] = be.empty({nl});
  s[kLn2Rstd] = be.empty({nl});
  be.layernorm_forward(s[kXMid], ln2_w_->value, ln2_b_->value, kLnEps, s[kLn2], s[kLn2Mean], s[kLn2Rstd]);

  s[kFc] = be.empty({n, 4 * cl});
  be.linear_forward(whole(s[kLn2]), fc_w_->value, fc_b_->value, s[kFc], mb.row_block);
  s[kGelu] = be.empty({n, 4 * cl});
  be.gelu_forward(s[kFc], s[kGelu]);

  Tensor y = be.empty(x.shape());
  row_parallel_forward(be, group_, s[kGelu], fc_proj_w_->value, once(fc_proj_b_), y.view({nl, c}), mb.row_block,
                       shape_.split_pieces(), samples);
  be.add_inplace(y.view({nl, c}), s[kXMid]);
  return y;
}

Tensor GptBlock::backward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& dy) {
  std::vector<Tensor>& s = ctx.saved;
  TROUPE_CHECK(s.size() == kCount, name_, ": backward without forward");
  const std::int64_t b = s[kQkv].dim(0), t = s[kQkv].dim(1), c = shape_.n_embd, n = b * t;
  const std::int64_t nl = s[kX].numel() / c;
  const bool seq = nl != n;  // forward split the sequence
  const std::int64_t samples = seq ? b : 0;
  const std::int64_t rb = mb.row_block, tp = group_.size(), cl = c / tp, heads = shape_.n_head / tp;
  // Sequence parallelism: a row-parallel output's gradient is gathered (scatter's backward); a
  // LayerNorm's output is gathered again for the weight gradient of the linear it fed.
  auto whole = [&](const Tensor& local) { return seq ? gather_sequence(be, group_, local, b) : local; };
  const Tensor dy2 = dy.view({nl, c});

  // MLP branch: y = x_mid + c_proj(gelu(c_fc(ln_2(x_mid)))). Every shard forms the (replicated)
  // row-parallel bias's gradient; the column-parallel input gradients are partial sums (f).
  Tensor d_gelu = be.empty({n, 4 * cl});
  be.linear_backward(whole(dy2), s[kGelu], fc_proj_w_->value, d_gelu, fc_proj_w_->grad, fc_proj_b_->grad, rb);
  be.gelu_backward(s[kFc], d_gelu, d_gelu);
  Tensor d_ln2 = be.empty({nl, c});
  column_parallel_backward(be, group_, d_gelu, whole(s[kLn2]), fc_w_->value, d_ln2, fc_w_->grad, fc_b_->grad, rb,
                           shape_.split_pieces(), samples);
  Tensor d_mid = be.empty({nl, c});
  be.layernorm_backward(d_ln2, s[kXMid], ln2_w_->value, s[kLn2Mean], s[kLn2Rstd], d_mid, ln2_w_->grad, ln2_b_->grad);
  be.add_inplace(d_mid, dy2);

  // Attention branch: x_mid = x + c_proj(attn(c_attn(ln_1(x)))).
  Tensor d_attn_y = tp == 1 ? d_ln2 : be.empty({n, cl});  // d_ln2 is no longer needed: reuse it when it fits
  be.linear_backward(whole(d_mid), s[kAttnY], proj_w_->value, d_attn_y, proj_w_->grad, proj_b_->grad, rb);
  Tensor d_qkv = be.empty({b, t, 3 * cl});
  be.attention_backward(d_attn_y, s[kQkv], s[kProbs], static_cast<int>(heads), d_qkv);
  Tensor d_ln1 = be.empty({nl, c});
  // q, k and v each cut by heads: pieces within each of the three.
  column_parallel_backward(be, group_, d_qkv.view({n, 3 * cl}), whole(s[kLn1]), attn_w_->value, d_ln1,
                           attn_w_->grad, attn_b_->grad, rb, 3 * shape_.split_pieces(), samples);
  Tensor dx = be.empty(s[kX].shape());
  be.layernorm_backward(d_ln1, s[kX].view({nl, c}), ln1_w_->value, s[kLn1Mean], s[kLn1Rstd], dx.view({nl, c}),
                        ln1_w_->grad, ln1_b_->grad);
  be.add_inplace(dx.view({nl, c}), d_mid);
  ctx.clear();
  return dx;
}

double GptBlock::flops_per_row() const {
  const double c = shape_.n_embd, t = shape_.block_size;
  // 12 C^2 multiply-adds in the projections and 2 T C in attention (full T x T computed), x2 for FLOPs,
  // x3 for forward + backward.
  return 3.0 * 2.0 * (12.0 * c * c + 2.0 * t * c);
}

}  // namespace troupe
