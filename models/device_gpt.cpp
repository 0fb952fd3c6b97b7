// DeviceGpt: GPT-2 forward, backward and update through Backend ops, mirroring models/gpt_*.cpp op for op.
#include "models/device_gpt.h"

#include <cmath>

#include "runtime/optim/lr_schedule.h"

namespace troupe {

namespace {
constexpr float kLnEps = 1e-5f;
}  // namespace

DeviceGpt::DeviceGpt(const RunConfig& config, DeviceOps& ops, Precision precision)
    : config_(config), ops_(ops), precision_(precision) {
  TROUPE_CHECK(config.model.kind == ModelKind::gpt, "DeviceGpt trains model.kind = gpt, not ", config.model.kind);
  Backend& be = ops_.backend();
  // The reference model's parameters, in its registration order, copied to the device.
  Model host(make_layer_specs(config.model, config.train.seed));
  for (const Param* hp : host.params().all()) {
    Param& d = params_.add(hp->name, hp->value.shape());
    d.value = ops_.upload(hp->value);
    d.grad = be.empty(hp->value.shape());
    be.zero(d.grad);
    num_params_ += hp->value.numel();
  }
  wte_ = &params_.at("transformer.wte.weight");
  wpe_ = &params_.at("transformer.wpe.weight");
  lnf_w_ = &params_.at("transformer.ln_f.weight");
  lnf_b_ = &params_.at("transformer.ln_f.bias");
  for (int i = 0; i < config.model.n_layer; ++i) {
    const std::string h = "transformer.h." + std::to_string(i) + ".";
    blocks_.push_back({p(h + "ln_1.weight"), p(h + "ln_1.bias"), p(h + "attn.c_attn.weight"), p(h + "attn.c_attn.bias"),
                       p(h + "attn.c_proj.weight"), p(h + "attn.c_proj.bias"), p(h + "ln_2.weight"), p(h + "ln_2.bias"),
                       p(h + "mlp.c_fc.weight"), p(h + "mlp.c_fc.bias"), p(h + "mlp.c_proj.weight"),
                       p(h + "mlp.c_proj.bias"), {}});
  }
  wte_grad_head_ = be.empty(wte_->value.shape());
  if (precision_ == Precision::bf16) refresh_bf16_weights();
}

Param* DeviceGpt::p(const std::string& name) { return &params_.at(name); }

std::vector<Param*> DeviceGpt::params() { return params_.all(); }

void DeviceGpt::refresh_bf16_weights() {
  std::vector<const Param*> weights{wte_};
  for (const Block& b : blocks_) weights.insert(weights.end(), {b.attn_w, b.proj_w, b.fc_w, b.fc_proj_w});
  for (const Param* w : weights) {
    auto it = w16_.find(w);
    if (it == w16_.end()) it = w16_.emplace(w, ops_.backend().empty(w->value.shape(), DType::bf16)).first;
    ops_.cast(w->value, it->second);
  }
}

// y = x w^T + b; saves what backward needs (x, or its bf16 copy) at the end of `saved`.
Tensor DeviceGpt::linear(const Tensor& x, Param* w, Param* b, std::vector<Tensor>& saved) {
  Backend& be = ops_.backend();
  const std::int64_t out = w->value.dim(0), in = w->value.dim(1), n = x.numel() / in;
  Tensor y = be.empty({n, out});
  const Tensor bias = b ? b->value : Tensor();
  const std::int64_t rows_per_sample = config_.model.block_size;  // the dataset's rows_per_sample() for text
  if (precision_ == Precision::bf16) {
    Tensor x16 = be.empty({n, in}, DType::bf16);
    ops_.cast(x.view({n, in}), x16);
    be.linear_forward(x16, w16_.at(w), bias, y, rows_per_sample);
    saved.push_back(x16);
  } else {
    be.linear_forward(x.view({n, in}), w->value, bias, y, rows_per_sample);
    saved.push_back(x.view({n, in}));
  }
  return y;
}

// dx = dy w (when wanted); w.grad += dy^T x; b.grad += column sums of dy.
Tensor DeviceGpt::linear_back(const Tensor& dy, Param* w, Param* b, const Tensor& saved_x, bool want_dx) {
  Backend& be = ops_.backend();
  const std::int64_t out = w->value.dim(0), in = w->value.dim(1), n = dy.numel() / out;
  Tensor dx = want_dx ? be.empty({n, in}) : Tensor();
  const Tensor db = b ? b->grad : Tensor();
  const std::int64_t rb = config_.model.block_size;
  if (precision_ == Precision::bf16) {
    Tensor dy16 = be.empty({n, out}, DType::bf16);
    ops_.cast(dy.view({n, out}), dy16);
    be.linear_backward(dy16, saved_x, w16_.at(w), dx, w == wte_ ? wte_grad_head_ : w->grad, db, rb);
  } else {
    be.linear_backward(dy.view({n, out}), saved_x, w->value, dx, w == wte_ ? wte_grad_head_ : w->grad, db, rb);
  }
  return dx;
}

// models/gpt_block.cpp's forward: x + attn(ln_1(x)), then + mlp(ln_2(.)).
Tensor DeviceGpt::block_forward(Block& k, const Tensor& x, std::int64_t b, std::int64_t t) {
  Backend& be = ops_.backend();
  const std::int64_t c = config_.model.n_embd, n = b * t;
  std::vector<Tensor>& s = k.saved;
  s.clear();
  const Tensor x2 = x.view({n, c});
  Tensor ln1 = be.empty({n, c}), m1 = be.empty({n}), r1 = be.empty({n});
  be.layernorm_forward(x2, k.ln1_w->value, k.ln1_b->value, kLnEps, ln1, m1, r1);
  s.insert(s.end(), {x2, m1, r1});                             // 0 x, 1 mean, 2 rstd
  Tensor qkv = linear(ln1, k.attn_w, k.attn_b, s);             // 3 ln1 (input of c_attn)
  Tensor probs = be.empty({b, config_.model.n_head, t, t});
  Tensor attn_y = be.empty({n, c});
  be.attention_forward(qkv.view({b, t, 3 * c}), config_.model.n_head, attn_y, probs);
  s.insert(s.end(), {qkv, probs});                             // 4 qkv, 5 probs
  Tensor x_mid = linear(attn_y, k.proj_w, k.proj_b, s);        // 6 attn_y
  be.add_inplace(x_mid, x2);
  Tensor ln2 = be.empty({n, c}), m2 = be.empty({n}), r2 = be.empty({n});
  be.layernorm_forward(x_mid, k.ln2_w->value, k.ln2_b->value, kLnEps, ln2, m2, r2);
  s.insert(s.end(), {x_mid, m2, r2});                          // 7 x_mid, 8 mean, 9 rstd
  Tensor fc = linear(ln2, k.fc_w, k.fc_b, s);                  // 10 ln2
  Tensor gelu = be.empty({n, 4 * c});
  be.gelu_forward(fc, gelu);
  s.push_back(fc);                                             // 11 fc
  Tensor y = linear(gelu, k.fc_proj_w, k.fc_proj_b, s);        // 12 gelu
  be.add_inplace(y, x_mid);
  return y;
}

Tensor DeviceGpt::block_backward(Block& k, const Tensor& dy, std::int64_t b, std::int64_t t) {
  Backend& be = ops_.backend();
  const std::int64_t c = config_.model.n_embd, n = b * t;
  std::vector<Tensor>& s = k.saved;
  const Tensor dy2 = dy.view({n, c});
  Tensor d_gelu = linear_back(dy2, k.fc_proj_w, k.fc_proj_b, s[12], true);
  be.gelu_backward(s[11], d_gelu, d_gelu);
  Tensor d_ln2 = linear_back(d_gelu, k.fc_w, k.fc_b, s[10], true);
  Tensor d_mid = be.empty({n, c});
  be.layernorm_backward(d_ln2, s[7], k.ln2_w->value, s[8], s[9], d_mid, k.ln2_w->grad, k.ln2_b->grad);
  be.add_inplace(d_mid, dy2);
  Tensor d_attn_y = linear_back(d_mid, k.proj_w, k.proj_b, s[6], true);
  Tensor d_qkv = be.empty({b, t, 3 * c});
  be.attention_backward(d_attn_y, s[4].view({b, t, 3 * c}), s[5], config_.model.n_head, d_qkv);
  Tensor d_ln1 = linear_back(d_qkv.view({n, 3 * c}), k.attn_w, k.attn_b, s[3], true);
  Tensor dx = be.empty({n, c});
  be.layernorm_backward(d_ln1, s[0], k.ln1_w->value, s[1], s[2], dx, k.ln1_w->grad, k.ln1_b->grad);
  be.add_inplace(dx, d_mid);
  s.clear();
  return dx;
}

double DeviceGpt::forward(const Batch& batch, Head* hd) {
  Backend& be = ops_.backend();
  const std::int64_t b = batch.inputs.dim(0), t = batch.inputs.dim(1), c = config_.model.n_embd, n = b * t;
  if (position_ids_.numel() != n) {
    Tensor ids = Tensor::empty({n}, DType::i32);
    for (std::int64_t i = 0; i < n; ++i) ids.i32()[i] = static_cast<std::int32_t>(i % t);
    position_ids_ = ops_.upload(ids);
  }
  hd->tokens = ops_.upload(batch.inputs.view({n}));
  hd->targets = ops_.upload(batch.targets.view({n}));
  // Embedding (gpt_embedding.cpp), blocks, head (gpt_head.cpp).
  Tensor x = be.empty({n, c});
  Tensor pos = be.empty({n, c});
  be.embedding_forward(hd->tokens, wte_->value, x);
  be.embedding_forward(position_ids_, wpe_->value, pos);
  be.add_inplace(x, pos);
  for (Block& k : blocks_) x = block_forward(k, x, b, t);
  hd->x = x;
  hd->h = be.empty({n, c});
  hd->mean = be.empty({n});
  hd->rstd = be.empty({n});
  be.layernorm_forward(x, lnf_w_->value, lnf_b_->value, kLnEps, hd->h, hd->mean, hd->rstd);
  hd->saved.clear();
  hd->logits = linear(hd->h, wte_, nullptr, hd->saved);
  Tensor losses = be.empty({n});
  return be.cross_entropy_forward(hd->logits, hd->targets, hd->logits, losses);  // probs overwrite logits
}

double DeviceGpt::loss_sum(const Batch& batch) {
  Head hd;
  const double sum = forward(batch, &hd);
  for (Block& k : blocks_) k.saved.clear();
  return sum;
}

GptStepResult DeviceGpt::step(const Batch& batch, std::int64_t step_index) {
  Backend& be = ops_.backend();
  const std::int64_t b = batch.inputs.dim(0), t = batch.inputs.dim(1), c = config_.model.n_embd, n = b * t;
  const std::int64_t v = config_.model.vocab_size;

  // zero_grad, as Model::zero_grad (parameters, then the head's share of wte).
  for (Param* q : params_.all()) be.zero(q->grad);
  be.zero(wte_grad_head_);

  Head hd;
  const double loss_sum = forward(batch, &hd);

  // Backward.
  const float scale = 1.0f / static_cast<float>(n);
  be.cross_entropy_backward(hd.logits, hd.targets, scale, hd.logits);
  Tensor dh = linear_back(hd.logits.view({n, v}), wte_, nullptr, hd.saved[0], true);
  Tensor dx = be.empty({n, c});
  be.layernorm_backward(dh, hd.x, lnf_w_->value, hd.mean, hd.rstd, dx, lnf_w_->grad, lnf_b_->grad);
  for (std::size_t i = blocks_.size(); i-- > 0;) dx = block_backward(blocks_[i], dx, b, t);
  be.embedding_backward(hd.tokens, dx, wte_->grad);
  be.embedding_backward(position_ids_, dx, wpe_->grad);
  be.add_inplace(wte_->grad, wte_grad_head_);  // GptHead::fold_extra_grads

  GptStepResult r;
  r.loss = loss_sum / static_cast<double>(n);
  r.lr = lr_at(config_.train, config_.optim.lr_or_default(), step_index);
  std::vector<Param*> all = params_.all();
  r.grad_norm = ops_.clip_and_step(all, config_.train.grad_clip, r.lr);
  if (precision_ == Precision::bf16) refresh_bf16_weights();
  return r;
}

}  // namespace troupe
