// Owns the stacked LSTM language model's layers (model.kind = lstm): byte embedding, LSTM layers, linear head.
//
// Shapes (B sequences, T steps, E = H = model.n_embd, V = vocab): tokens [B, T] -> embedding [B, T, H]
// -> n_layer LSTM layers [B, T, H] -> head: logits [B*T, V] -> softmax cross-entropy (SoftmaxCrossEntropy).
// Every LSTM layer is one torch.nn.LSTM layer (gate order i, f, g, o; two bias vectors) and its own Layer,
// so pipeline stages split the stack by layers. Each batch row is an independent sequence that starts
// from zero state: back-propagation is truncated at model.block_size steps, and no state is carried
// from one batch to the next. Parameter names are those of a torch module with attributes embedding
// (nn.Embedding), lstm (nn.LSTM(H, H, n_layer, batch_first=True)) and head (nn.Linear):
//   embedding.weight [V, H]; lstm.weight_ih_l{k} [4H, H], lstm.weight_hh_l{k} [4H, H],
//   lstm.bias_ih_l{k} [4H], lstm.bias_hh_l{k} [4H]; head.weight [V, H], head.bias [V]
// Initialisation follows torch's defaults: N(0, 1) for the embedding, U(-1/sqrt(H), 1/sqrt(H)) for the
// rest.
#pragma once

#include "models/layer.h"

namespace troupe {

struct LstmShape {
  int n_layer = 2, hidden = 256, vocab_size = 256;
};

class LstmEmbedding final : public Layer {
 public:
  LstmEmbedding(ParamSet& params, const LstmShape& shape, std::uint64_t seed);
  const std::string& name() const override { return name_; }
  std::vector<Param*> params() const override { return {table_}; }
  Tensor forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& tokens) override;
  Tensor backward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& dy) override;
  double flops_per_row() const override { return 2.0 * shape_.hidden; }

 private:
  std::string name_ = "embedding";
  LstmShape shape_;
  Param* table_;
};

// One layer of the stack: the input projection of every step as one product, then the recurrence
// (Backend::lstm_forward); backward runs the recurrence back and forms the weight gradients as products
// over all steps, one sequence per exact-sum term in deterministic mode.
class LstmLayer final : public Layer {
 public:
  LstmLayer(ParamSet& params, const LstmShape& shape, int index, std::uint64_t seed);
  const std::string& name() const override { return name_; }
  std::vector<Param*> params() const override { return {w_ih_, w_hh_, b_ih_, b_hh_}; }
  Tensor forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& x) override;
  Tensor backward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& dy) override;
  double flops_per_row() const override;

 private:
  std::string name_;
  LstmShape shape_;
  Param *w_ih_, *w_hh_, *b_ih_, *b_hh_;
};

// logits [B*T, V] = x W^T + b; the loss layer after it (SoftmaxCrossEntropy) turns them into losses.
class LstmHead final : public Layer {
 public:
  LstmHead(ParamSet& params, const LstmShape& shape, std::uint64_t seed);
  const std::string& name() const override { return name_; }
  std::vector<Param*> params() const override { return {w_, b_}; }
  Tensor forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& x) override;
  Tensor backward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& dy) override;
  double flops_per_row() const override { return 6.0 * shape_.hidden * shape_.vocab_size; }

 private:
  std::string name_ = "head";
  LstmShape shape_;
  Param *w_, *b_;
};

}  // namespace troupe
