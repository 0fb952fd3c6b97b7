// The stacked LSTM language model's layers: embedding, one LSTM layer, linear head.
#include "models/lstm_layers.h"

#include <algorithm>
#include <cmath>

#include "models/init.h"

namespace troupe {

namespace {
std::int64_t steps_of(const Tensor& x) { return x.ndim() == 3 ? x.dim(1) : 1; }
}  // namespace

LstmEmbedding::LstmEmbedding(ParamSet& params, const LstmShape& shape, std::uint64_t seed) : shape_(shape) {
  table_ = &params.add("embedding.weight", {shape.vocab_size, shape.hidden});
  init_normal(table_->value, seed, table_->name, 1.0);
}

Tensor LstmEmbedding::forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& tokens) {
  TROUPE_CHECK(tokens.ndim() == 2, "tokens must be [B, T], got ", shape_str(tokens.shape()));
  const std::int64_t b = tokens.dim(0), t = tokens.dim(1), h = shape_.hidden;
  Tensor y = be.empty({b, t, h});
  be.embedding_forward(tokens.view({b * t}), table_->value, y.view({b * t, h}));
  if (mb.training) ctx.saved = {tokens};
  return y;
}

Tensor LstmEmbedding::backward(Backend& be, const MicroBatch&, LayerCtx& ctx, const Tensor& dy) {
  TROUPE_CHECK(ctx.saved.size() == 1, name_, ": backward without a training-mode forward");
  const Tensor& tokens = ctx.saved[0];
  const std::int64_t n = tokens.numel();
  be.embedding_backward(tokens.view({n}), dy.view({n, shape_.hidden}), table_->grad);
  ctx.clear();
  return {};
}

LstmLayer::LstmLayer(ParamSet& params, const LstmShape& shape, int index, std::uint64_t seed)
    : name_("lstm.l" + std::to_string(index)), shape_(shape) {
  const std::string k = "_l" + std::to_string(index);
  const int h = shape.hidden;
  w_ih_ = &params.add("lstm.weight_ih" + k, {4 * h, h});
  w_hh_ = &params.add("lstm.weight_hh" + k, {4 * h, h});
  b_ih_ = &params.add("lstm.bias_ih" + k, {4 * h});
  b_hh_ = &params.add("lstm.bias_hh" + k, {4 * h});
  for (Param* p : {w_ih_, w_hh_, b_ih_, b_hh_})
    init_uniform(p->value, seed, p->name, 1.0 / std::sqrt(static_cast<double>(h)));
}

Tensor LstmLayer::forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& x) {
  const std::int64_t hid = shape_.hidden;
  TROUPE_CHECK(x.ndim() == 3 && x.dim(2) == hid, name_, ": input must be [B, T, ", hid, "], got ",
               shape_str(x.shape()));
  const std::int64_t b = x.dim(0), t = x.dim(1);
  // Every step's input projection in one product; a sequence is one deterministic-mode sample.
  Tensor xg = be.empty({b, t, 4 * hid});
  be.linear_forward(x.view({b * t, hid}), w_ih_->value, b_ih_->value, xg.view({b * t, 4 * hid}), t);
  Tensor h = be.empty({b, t, hid}), c = be.empty({b, t, hid}), acts = be.empty({b, t, 4 * hid});
  be.lstm_forward(xg, w_hh_->value, b_hh_->value, h, c, acts);
  if (mb.training) ctx.saved = {x, h, c, acts};
  return h;
}

Tensor LstmLayer::backward(Backend& be, const MicroBatch&, LayerCtx& ctx, const Tensor& dy) {
  TROUPE_CHECK(ctx.saved.size() == 4, name_, ": backward without a training-mode forward");
  const Tensor& x = ctx.saved[0];
  const Tensor& h = ctx.saved[1];
  const std::int64_t hid = shape_.hidden, b = x.dim(0), t = x.dim(1), rows = b * t;
  Tensor dz = be.empty({b, t, 4 * hid});
  be.lstm_backward(dy.view({b, t, hid}), w_hh_->value, ctx.saved[2], ctx.saved[3], dz);
  // h_{t-1} beside every step's dz (zero state before the first step), so that dW_hh is one product.
  Tensor h_prev = be.empty({b, t, hid});
  const float* hp = h.f32();
  float* pp = h_prev.f32();
  for (std::int64_t s = 0; s < b; ++s) {
    float* row = pp + s * t * hid;
    std::fill(row, row + hid, 0.0f);
    std::copy(hp + s * t * hid, hp + (s * t + t - 1) * hid, row + hid);
  }
  const Tensor dz2 = dz.view({rows, 4 * hid});
  be.linear_backward(dz2, h_prev.view({rows, hid}), w_hh_->value, Tensor(), w_hh_->grad, b_hh_->grad, t);
  Tensor dx = be.empty({b, t, hid});
  be.linear_backward(dz2, x.view({rows, hid}), w_ih_->value, dx.view({rows, hid}), w_ih_->grad, b_ih_->grad, t);
  ctx.clear();
  return dx;
}

// Input and recurrent products (2 x 4H x H multiply-adds each), forward and twice that backward.
double LstmLayer::flops_per_row() const { return 3.0 * 2.0 * 8.0 * shape_.hidden * shape_.hidden; }

LstmHead::LstmHead(ParamSet& params, const LstmShape& shape, std::uint64_t seed) : shape_(shape) {
  w_ = &params.add("head.weight", {shape.vocab_size, shape.hidden});
  b_ = &params.add("head.bias", {shape.vocab_size});
  const double bound = 1.0 / std::sqrt(static_cast<double>(shape.hidden));
  init_uniform(w_->value, seed, w_->name, bound);
  init_uniform(b_->value, seed, b_->name, bound);
}

Tensor LstmHead::forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& x) {
  const std::int64_t hid = shape_.hidden, rows = x.numel() / hid;
  Tensor logits = be.empty({rows, shape_.vocab_size});
  be.linear_forward(x.view({rows, hid}), w_->value, b_->value, logits, steps_of(x));
  if (mb.training) ctx.saved = {x};
  return logits;
}

Tensor LstmHead::backward(Backend& be, const MicroBatch&, LayerCtx& ctx, const Tensor& dy) {
  TROUPE_CHECK(ctx.saved.size() == 1, name_, ": backward without a training-mode forward");
  const Tensor& x = ctx.saved[0];
  const std::int64_t hid = shape_.hidden, rows = x.numel() / hid;
  Tensor dx = be.empty(x.shape());
  be.linear_backward(dy, x.view({rows, hid}), w_->value, dx.view({rows, hid}), w_->grad, b_->grad, steps_of(x));
  ctx.clear();
  return dx;
}

}  // namespace troupe
