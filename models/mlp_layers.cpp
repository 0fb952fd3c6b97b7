// Dense and softmax cross-entropy layers of the MLP.
#include "models/mlp_layers.h"

#include <cmath>

#include "models/init.h"

namespace troupe {

DenseLayer::DenseLayer(ParamSet& params, int index, int in, int out, bool relu, std::uint64_t seed)
    : name_("layers." + std::to_string(index)), in_(in), out_(out), relu_(relu), first_(index == 0) {
  w_ = &params.add(name_ + ".weight", {out, in});
  b_ = &params.add(name_ + ".bias", {out});
  // torch.nn.Linear's default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  init_uniform(w_->value, seed, w_->name, bound);
  init_uniform(b_->value, seed, b_->name, bound);
}

Tensor DenseLayer::forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& x) {
  const std::int64_t rows = x.numel() / in_;
  if (x.numel() != rows * in_ || x.dim(-1) != in_)
    throw Error(ErrorKind::kShape, name_ + ": expected inputs of width " + std::to_string(in_) + ", got " + shape_str(x.shape()));
  Tensor y = be.empty({rows, out_});
  be.linear_forward(x, w_->value, b_->value, y, mb.row_block);
  if (relu_) be.relu_forward(y, y);
  ctx.saved = {x, y};
  return y;
}

Tensor DenseLayer::backward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& dy) {
  const Tensor& x = ctx.saved.at(0);
  const Tensor& y = ctx.saved.at(1);
  Tensor g = dy;
  if (relu_) {
    g = be.empty(dy.shape());
    be.relu_backward(y, dy, g);
  }
  Tensor dx = first_ ? Tensor() : be.empty(x.shape());
  be.linear_backward(g, x, w_->value, dx, w_->grad, b_->grad, mb.row_block);
  ctx.clear();
  return dx;
}

Tensor SoftmaxCrossEntropy::forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& logits) {
  const std::int64_t rows = logits.dim(0);
  TROUPE_CHECK(mb.targets.numel() == rows, "targets ", shape_str(mb.targets.shape()), " for ", rows, " rows");
  Tensor probs = be.empty(logits.shape());
  Tensor losses = be.empty({rows});
  be.cross_entropy_forward(logits, mb.targets, probs, losses);
  ctx.saved = {probs};
  return losses;
}

Tensor SoftmaxCrossEntropy::backward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor&) {
  Tensor probs = ctx.saved.at(0);
  Tensor dlogits = be.empty(probs.shape());
  be.cross_entropy_backward(probs, mb.targets, mb.loss_scale, dlogits);
  ctx.clear();
  return dlogits;
}

}  // namespace troupe
