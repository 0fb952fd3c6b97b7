// GPT head: final LayerNorm, logits through the tied token embedding, per-token cross-entropy.
#include "models/gpt_layers.h"
#include "models/init.h"

namespace troupe {

namespace {
enum Saved { kX, kH, kMean, kRstd, kProbs, kCount };
}

GptHead::GptHead(ParamSet& params, const GptShape& shape, std::uint64_t seed) : shape_(shape) {
  lnf_w_ = &params.add("transformer.ln_f.weight", {shape.n_embd});
  lnf_b_ = &params.add("transformer.ln_f.bias", {shape.n_embd});
  init_constant(lnf_w_->value, 1.0f);
  init_constant(lnf_b_->value, 0.0f);
  wte_ = params.find("transformer.wte.weight");
  if (!wte_) {
    replica_ = std::make_unique<Param>();
    replica_->name = "transformer.wte.weight";
    replica_->value = Tensor::empty({shape.vocab_size, shape.n_embd});
    init_normal(replica_->value, seed, replica_->name, 0.02);  // the same stream GptEmbedding draws from
    wte_ = replica_.get();
  }
  wte_grad_ = Tensor::zeros(wte_->value.shape());
}

Tensor GptHead::forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& x) {
  const std::int64_t c = shape_.n_embd, n = x.numel() / c, v = shape_.vocab_size;
  std::vector<Tensor>& s = ctx.saved;
  s.assign(kCount, Tensor());
  s[kX] = x.view({n, c});
  s[kH] = be.empty({n, c});
  s[kMean] = be.empty({n});
  s[kRstd] = be.empty({n});
  be.layernorm_forward(s[kX], lnf_w_->value, lnf_b_->value, 1e-5f, s[kH], s[kMean], s[kRstd]);
  Tensor logits = be.empty({n, v});
  be.linear_forward(s[kH], wte_->value, Tensor(), logits, mb.row_block);
  TROUPE_CHECK(mb.targets.numel() == n, "targets ", shape_str(mb.targets.shape()), " for ", n, " rows");
  Tensor losses = be.empty({n});
  be.cross_entropy_forward(logits, mb.targets.view({n}), logits, losses);  // probs overwrite logits
  s[kProbs] = logits;
  return losses;
}

Tensor GptHead::backward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& /*dy*/) {
  std::vector<Tensor>& s = ctx.saved;
  TROUPE_CHECK(s.size() == kCount, name_, ": backward without forward");
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

double GptHead::flops_per_row() const { return 3.0 * 2.0 * shape_.n_embd * shape_.vocab_size; }

Tensor GptHead::probabilities(const LayerCtx& ctx) const { return ctx.saved.at(kProbs); }

void GptHead::zero_extra_grads() { wte_grad_.fill(0.0f); }

void GptHead::fold_extra_grads() {
  if (replica_) return;  // the owner is on another stage: the pipeline ships tied_grad() there
  float* dst = wte_->grad.f32();
  const float* src = wte_grad_.f32();
  for (std::int64_t i = 0, n = wte_grad_.numel(); i < n; ++i) dst[i] += src[i];
}

}  // namespace troupe
