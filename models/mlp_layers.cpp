// Dense and softmax cross-entropy layers of the MLP.
#include "models/mlp_layers.h"

#include <cmath>

#include "models/init.h"
#include "models/sharded_param.h"
#include "models/tensor_parallel_linear.h"
#include "runtime/comm/tensor_parallel_ops.h"

namespace troupe {

DenseLayer::DenseLayer(ParamSet& params, int index, int in, int out, bool relu, std::uint64_t seed,
                       comm::TensorGroup group, DenseSplit split, int pieces)
    : name_("layers." + std::to_string(index)), in_(in), out_(out), relu_(relu), first_(index == 0), group_(group),
      split_(group.split() ? split : DenseSplit::whole), role_(split), pieces_(pieces) {
  // torch.nn.Linear's default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  auto uniform = [=](const Tensor& t, const std::string& n) { init_uniform(t, seed, n, bound); };
  const int tp = group.size(), me = group.rank();
  const TensorSplit by_out{0, 1, tp, me}, by_in{1, 1, tp, me}, whole{};
  w_ = add_sharded(params, name_ + ".weight", {out, in},
                   split_ == DenseSplit::column ? by_out : split_ == DenseSplit::row ? by_in : whole, uniform);
  b_ = add_sharded(params, name_ + ".bias", {out}, split_ == DenseSplit::column ? by_out : whole, uniform);
  if (split_ == DenseSplit::column) out_ = out / tp;
  if (split_ == DenseSplit::row) in_ = in / tp;
}

Tensor DenseLayer::forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& x) {
  const std::int64_t rows = x.numel() / in_;
  if (x.numel() != rows * in_ || x.dim(-1) != in_)
    throw Error(ErrorKind::kShape, name_ + ": expected inputs of width " + std::to_string(in_) + ", got " + shape_str(x.shape()));
  Tensor y = be.empty({rows, out_});
  // Row-parallel: partial sums of the whole output, summed by g; the bias is added once (shard 0).
  const bool row = split_ == DenseSplit::row;
  // The pairs' sums are cut by T whatever the split (T = 1 included), so that deterministic mode's exact
  // sums give every T the same bits.
  if (role_ == DenseSplit::row)
    row_parallel_forward(be, group_, x, w_->value, row && group_.rank() != 0 ? Tensor() : b_->value, y, mb.row_block,
                         pieces_);
  else be.linear_forward(x, w_->value, b_->value, y, mb.row_block);
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
  if (role_ == DenseSplit::column)
    column_parallel_backward(be, group_, g, x, w_->value, dx, w_->grad, b_->grad, mb.row_block, pieces_);
  else be.linear_backward(g, x, w_->value, dx, w_->grad, b_->grad, mb.row_block);
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
