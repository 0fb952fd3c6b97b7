// Owns the GPT-2 layers: token+position embedding, transformer block, and the tied LM head with its loss.
//
// Shapes (B samples, T tokens, C = n_embd, V = vocab, H = n_head): tokens [B, T] -> embedding
// [B, T, C] -> n_layer blocks [B, T, C] -> head: per-token losses [B*T]. Parameter names follow
// nanoGPT so weights move between troupe and PyTorch.
//
// Tensor parallelism (a TensorGroup of T shards; docs/tensor-parallel.md): a block's attn.c_attn is
// column-parallel by whole heads (n_head / T per shard), attn.c_proj row-parallel, mlp.c_fc column-
// and mlp.c_proj row-parallel; the row-parallel biases are added once (by shard 0, before the sum) and
// their gradients formed on every shard; LayerNorms and wpe are replicated. The token embedding and the
// tied LM head are split by vocabulary, with a cross-entropy that reduces only each row's max, sum of
// exponentials and target logit across shards. With T = 1 every layer is the single-device layer.
//
// Sequence parallelism (group.sequence_split(), parallel.sequence_parallel): between the layers each
// shard holds its part of every sample's tokens, [B, T/Tp, C] (runtime/comm/tensor_parallel_ops.h,
// "sequence split"). The embedding reduce-scatters its vocabulary-parallel sum into that part (its
// backward all-gathers, so wpe's gradient is formed from every token, as without); each block runs its
// LayerNorms and residual adds on its part, all-gathers before c_attn and c_fc and reduce-scatters after
// the two c_proj; the head runs ln_f on its part and all-gathers before the vocabulary-parallel LM
// head, whose input gradient it reduce-scatters. The LayerNorms' parameters (ln_1, ln_2, ln_f) then see
// only this shard's tokens: their gradients are marked Param::sequence_partial and summed over the group
// before the step (models/sequence_grads.h).
#pragma once

#include <memory>
#include <numeric>

#include "models/loss_layer.h"
#include "runtime/comm/tensor_group.h"

namespace troupe {

struct GptShape {
  int n_layer = 4, n_head = 4, n_embd = 256, block_size = 128, vocab_size = 256;

  // Every parallel.tensor the config allows divides this (it divides n_head, vocab_size and 4 n_embd):
  // deterministic mode cuts each split sum into this many exact pieces (models/tensor_parallel_linear.h).
  int split_pieces() const { return std::gcd(std::gcd(n_head, vocab_size), 4 * n_embd); }
};

// Whether `group` splits the sequence of `tokens` tokens per sample (sequence parallelism); throws
// troupe::Error(kShape) when it should and the group's size does not divide the tokens.
bool sequence_split(comm::TensorGroup group, std::int64_t tokens);

class GptEmbedding final : public Layer {
 public:
  GptEmbedding(ParamSet& params, const GptShape& shape, std::uint64_t seed, comm::TensorGroup group = {});
  const std::string& name() const override { return name_; }
  std::vector<Param*> params() const override { return {wte_, wpe_}; }
  Tensor forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& tokens) override;
  Tensor backward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& dy) override;
  double flops_per_row() const override;

 private:
  std::string name_ = "transformer.wte+wpe";
  GptShape shape_;
  comm::TensorGroup group_;
  Param* wte_;
  Param* wpe_;
};

class GptBlock final : public Layer {
 public:
  GptBlock(ParamSet& params, const GptShape& shape, int index, std::uint64_t seed, comm::TensorGroup group = {});
  const std::string& name() const override { return name_; }
  std::vector<Param*> params() const override;
  Tensor forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& x) override;
  Tensor backward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& dy) override;
  double flops_per_row() const override;

 private:
  std::string name_;
  GptShape shape_;
  comm::TensorGroup group_;
  Param *ln1_w_, *ln1_b_, *attn_w_, *attn_b_, *proj_w_, *proj_b_;
  Param *ln2_w_, *ln2_b_, *fc_w_, *fc_b_, *fc_proj_w_, *fc_proj_b_;
};

// Final LayerNorm, logits = ln_f(x) @ wte^T (the token embedding, tied), and cross-entropy.
// The tied weight's gradient from this layer is kept in its own buffer and folded into wte's gradient
// by fold_extra_grads(), so the sum is formed the same way whether or not embedding and head share a stage.
// When the embedding is on another stage (its ParamSet has no transformer.wte.weight), the head keeps a
// replica of wte, initialised identically; the pipeline ships tied_grad() to the owner before the
// optimizer step and the updated weight back into the replica after it.
class GptHead final : public LossLayer {
 public:
  GptHead(ParamSet& params, const GptShape& shape, std::uint64_t seed, comm::TensorGroup group = {});
  const std::string& name() const override { return name_; }
  std::vector<Param*> params() const override { return {lnf_w_, lnf_b_}; }
  Tensor forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& x) override;
  Tensor backward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& dy) override;
  double flops_per_row() const override;
  void zero_extra_grads() override;
  void fold_extra_grads() override;
  std::vector<Tensor> extra_grads() const override { return {wte_grad_}; }
  Tensor probabilities(const LayerCtx& ctx) const override;
  TiedUse tied_use() override { return {wte_, &wte_grad_, replica_ != nullptr}; }

  bool has_replica() const { return replica_ != nullptr; }
  const Tensor& tied_grad() const { return wte_grad_; }
  Param& tied_weight() { return *wte_; }

 private:
  std::string name_ = "transformer.ln_f+lm_head";
  // Vocabulary-parallel cross-entropy over this shard's logits [n, V/T] (tensor parallelism).
  Tensor split_forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, Tensor logits);
  Tensor split_backward(Backend& be, const MicroBatch& mb, LayerCtx& ctx);

  std::unique_ptr<Param> replica_;  // set when wte lives on another stage
  GptShape shape_;
  comm::TensorGroup group_;
  Param *lnf_w_, *lnf_b_;
  Param* wte_;       // owned by GptEmbedding
  Tensor wte_grad_;  // this layer's contribution to wte's gradient
};

}  // namespace troupe
