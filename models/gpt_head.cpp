// GPT head: final LayerNorm, logits through the tied token embedding, per-token cross-entropy.
#include "models/gpt_layers.h"
#include "models/init.h"

#include <algorithm>
#include <cmath>

#include "models/sharded_param.h"
#include "models/tensor_parallel_linear.h"
#include "runtime/comm/tensor_parallel_ops.h"

namespace troupe {

namespace {
enum Saved { kX, kH, kMean, kRstd, kProbs, kCount };
}

GptHead::GptHead(ParamSet& params, const GptShape& shape, std::uint64_t seed, comm::TensorGroup group)
    : shape_(shape), group_(group) {
  lnf_w_ = &params.add("transformer.ln_f.weight", {shape.n_embd});
  lnf_b_ = &params.add("transformer.ln_f.bias", {shape.n_embd});
  init_constant(lnf_w_->value, 1.0f);
  init_constant(lnf_b_->value, 0.0f);
  lnf_w_->sequence_partial = lnf_b_->sequence_partial = group.sequence_split();
  wte_ = params.find("transformer.wte.weight");
  if (!wte_) {
    replica_ = std::make_unique<Param>();
    replica_->name = "transformer.wte.weight";
    // The same stream GptEmbedding draws from, and the same shard of it.
    replica_->split = TensorSplit{0, 1, group.size(), group.rank()};
    Tensor whole = Tensor::empty({shape.vocab_size, shape.n_embd});
    init_normal(whole, seed, replica_->name, 0.02);
    replica_->value = shard_of(whole, replica_->split);
    wte_ = replica_.get();
  }
  wte_grad_ = Tensor::zeros(wte_->value.shape());
}

Tensor GptHead::forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& x) {
  // Sequence parallelism: x is this shard's part of every sample's tokens (nl rows); ln_f runs on it,
  // and the LM head on every token's (gathered).
  const bool seq = mb.inputs.defined() && mb.inputs.ndim() == 2 && sequence_split(group_, mb.inputs.dim(1));
  const std::int64_t c = shape_.n_embd, nl = x.numel() / c, n = seq ? nl * group_.size() : nl;
  const std::int64_t v = shape_.vocab_size / group_.size();
  std::vector<Tensor>& s = ctx.saved;
  s.assign(kCount, Tensor());
  s[kX] = x.view({nl, c});
  s[kH] = be.empty({nl, c});
  s[kMean] = be.empty({nl});
  s[kRstd] = be.empty({nl});
  be.layernorm_forward(s[kX], lnf_w_->value, lnf_b_->value, 1e-5f, s[kH], s[kMean], s[kRstd]);
  Tensor logits = be.empty({n, v});
  be.linear_forward(seq ? gather_sequence(be, group_, s[kH], mb.inputs.dim(0)) : s[kH], wte_->value, Tensor(), logits,
                    mb.row_block);
  TROUPE_CHECK(mb.targets.numel() == n, "targets ", shape_str(mb.targets.shape()), " for ", n, " rows");
  // Deterministic mode takes the vocabulary-parallel path at T = 1 too: its exact sums are what make
  // every T the same bits.
  if (group_.split() || be.deterministic()) return split_forward(be, mb, ctx, logits);
  Tensor losses = be.empty({n});
  be.cross_entropy_forward(logits, mb.targets.view({n}), logits, losses);  // probs overwrite logits
  s[kProbs] = logits;
  return losses;
}

Tensor GptHead::backward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& /*dy*/) {
  std::vector<Tensor>& s = ctx.saved;
  TROUPE_CHECK(s.size() == kCount, name_, ": backward without forward");
  if (group_.split() || be.deterministic()) return split_backward(be, mb, ctx);
  const std::int64_t c = shape_.n_embd, n = s[kX].dim(0);
  Tensor dlogits = s[kProbs];  // in place: probs are not needed after this
  be.cross_entropy_backward(s[kProbs], mb.targets.view({n}), mb.loss_scale, dlogits);
  Tensor dh = be.empty({n, c});
  be.linear_backward(dlogits, s[kH], wte_->value, dh, wte_grad_, Tensor(), mb.row_block);
  Tensor dx = be.empty({n, c});
  be.layernorm_backward(dh, s[kX], lnf_w_->value, s[kMean], s[kRstd], dx, lnf_w_->grad, lnf_b_->grad);
  ctx.clear();
  return dx.view(mb.inputs.ndim() == 2 ? Shape{mb.inputs.dim(0), mb.inputs.dim(1), c} : Shape{n, c});
}

// Vocabulary-parallel cross-entropy (Megatron's): shard t holds logits [n, V/T] of tokens [lo, lo + V/T).
// -log softmax(l)[y] = log sum_j exp(l_j - m) + m - l_y with m = max_j l_j: each shard reduces its max,
// the group takes the max of maxes (n floats), then each shard its sum of exp(l_j - m) and, if it holds
// y, l_y; one sum over the group (2n floats) completes every row. No logit leaves its shard. In
// deterministic mode that sum is exact (2n 16-byte sums), so the bits do not depend on T.
Tensor GptHead::split_forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, Tensor logits) {
  const std::int64_t n = logits.dim(0), v = logits.dim(1), lo = v * group_.rank();
  const std::int32_t* y = mb.targets.i32();
  float* l = logits.f32();
  std::vector<float> mx(static_cast<std::size_t>(n)), sums(2 * static_cast<std::size_t>(n), 0.0f);
  for (std::int64_t r = 0; r < n; ++r) {
    if (y[r] < 0 || y[r] >= shape_.vocab_size)
      throw Error(ErrorKind::kInput, "target class " + std::to_string(y[r]) + " at row " + std::to_string(r) +
                                         " is outside [0, " + std::to_string(shape_.vocab_size) + ")");
    mx[static_cast<std::size_t>(r)] = *std::max_element(l + r * v, l + (r + 1) * v);
  }
  comm::allreduce_max(group_, mx);
  for (std::int64_t r = 0; r < n; ++r) {
    float* row = l + r * v;
    const float m = mx[static_cast<std::size_t>(r)];
    // l_y - m from the logit itself, before the exp overwrites it (its log would lose digits).
    if (y[r] >= lo && y[r] < lo + v) sums[2 * static_cast<std::size_t>(r) + 1] = row[y[r] - lo] - m;
    float sum = 0.0f;
    for (std::int64_t j = 0; j < v; ++j) sum += (row[j] = std::exp(row[j] - m));
    sums[2 * static_cast<std::size_t>(r)] = sum;
  }
  if (be.deterministic()) {
    std::vector<ExactSum> exact(sums.size());
    for (std::int64_t r = 0; r < n; ++r) {
      const float* row = l + r * v;
      ExactSum e = 0;
      for (std::int64_t j = 0; j < v; ++j) e = exact_add(e, to_exact(row[j]));
      exact[2 * static_cast<std::size_t>(r)] = e;
      exact[2 * static_cast<std::size_t>(r) + 1] = to_exact(sums[2 * static_cast<std::size_t>(r) + 1]);
    }
    comm::g_forward_exact(group_, exact, sums);
  } else {
    comm::allreduce_sum(group_, sums);
  }
  Tensor losses = Tensor::empty({n});
  for (std::int64_t r = 0; r < n; ++r) {
    const float sum = sums[2 * static_cast<std::size_t>(r)], shifted_target = sums[2 * static_cast<std::size_t>(r) + 1];
    const float inv = 1.0f / sum;
    for (std::int64_t j = 0; j < v; ++j) l[r * v + j] *= inv;  // probabilities, kept for backward
    losses.f32()[r] = static_cast<float>(std::log(static_cast<double>(sum)) - shifted_target);
  }
  ctx.saved[kProbs] = logits;
  return losses;
}

Tensor GptHead::split_backward(Backend& be, const MicroBatch& mb, LayerCtx& ctx) {
  std::vector<Tensor>& s = ctx.saved;
  const std::int64_t c = shape_.n_embd, n = s[kProbs].dim(0), v = s[kProbs].dim(1), lo = v * group_.rank();
  const std::int64_t nl = s[kX].dim(0), samples = nl != n ? mb.inputs.dim(0) : 0;  // sequence parallelism
  const float scale = mb.loss_scale;
  const std::int32_t* y = mb.targets.i32();
  Tensor dlogits = s[kProbs];  // in place: probabilities are not needed after this
  float* d = dlogits.f32();
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t j = 0; j < v; ++j) {
      const float p = d[r * v + j];
      d[r * v + j] = scale * (lo + j == y[r] ? p - 1.0f : p);
    }
  Tensor dh = be.empty({nl, c});
  // The head is column-parallel by vocabulary: its input is replicated, its gradient sums the shards'
  // (under sequence parallelism: its input gathered again, its gradient reduce-scattered).
  column_parallel_backward(be, group_, dlogits, samples ? gather_sequence(be, group_, s[kH], samples) : s[kH],
                           wte_->value, dh, wte_grad_, Tensor(), mb.row_block, shape_.split_pieces(), samples);
  Tensor dx = be.empty({nl, c});
  be.layernorm_backward(dh, s[kX], lnf_w_->value, s[kMean], s[kRstd], dx, lnf_w_->grad, lnf_b_->grad);
  ctx.clear();
  return dx.view(mb.inputs.ndim() == 2 ? Shape{mb.inputs.dim(0), nl / mb.inputs.dim(0), c} : Shape{n, c});
}

double GptHead::flops_per_row() const { return 3.0 * 2.0 * shape_.n_embd * shape_.vocab_size; }

// Under tensor parallelism every shard gathers the whole rows (for evaluation's accuracy only: training
// never calls this), so all shards must ask together.
Tensor GptHead::probabilities(const LayerCtx& ctx) const {
  const Tensor& local = ctx.saved.at(kProbs);
  if (!group_.split()) return local;
  const std::int64_t n = local.dim(0), v = local.dim(1), tp = group_.size();
  Tensor by_shard = Tensor::empty({tp, n, v}), whole = Tensor::empty({n, v * tp});
  comm::all_gather_rows(group_, local.span_f32(), by_shard.span_f32());
  for (std::int64_t t = 0; t < tp; ++t)
    for (std::int64_t r = 0; r < n; ++r)
      std::copy(by_shard.f32() + (t * n + r) * v, by_shard.f32() + (t * n + r + 1) * v, whole.f32() + (r * tp + t) * v);
  return whole;
}

void GptHead::zero_extra_grads() { wte_grad_.fill(0.0f); }

void GptHead::fold_extra_grads() {
  if (replica_) return;  // the owner is on another stage: the pipeline ships tied_grad() there
  float* dst = wte_->grad.f32();
  const float* src = wte_grad_.f32();
  for (std::int64_t i = 0, n = wte_grad_.numel(); i < n; ++i) dst[i] += src[i];
}

}  // namespace troupe
