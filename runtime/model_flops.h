// Owns the model-FLOP count of a training step and model-FLOP utilisation (MFU), as PaLM and Megatron count.
//
// Model FLOPs are the multiply-adds (2 FLOPs each) of the matrix products the model needs, whatever the
// implementation does (recomputation, padding or a different kernel would not change them): forward 2
// FLOPs per weight per token, backward twice that (the input's and the weight's gradients), so 6 x N per
// token for N weights of matrix products; plus attention's two products per layer, QK^T and PV, each 2·T·C
// FLOPs per token forward, 12·T·C with backward (the full T x T square, not the causal half: PaLM's
// 6N + 12·L·H·Q·T with H·Q = C). Biases, LayerNorm, activations, softmax and the embedding lookup are
// left out (as both papers do). MFU = model FLOPs per second / the device's peak FLOPs per second.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/config/run_config.h"

namespace troupe {

// Weights of the GPT's matrix products: per layer qkv 3C^2, attention projection C^2, MLP 4C^2 + 4C^2
// (12 L C^2 in all), and the LM head tied to the token embedding, V C.
double gpt_matmul_weights(std::int64_t n_layer, std::int64_t n_embd, std::int64_t vocab);

// Training FLOPs per token of the GPT: 6 x gpt_matmul_weights + 12 L C T.
double gpt_train_flops_per_token(std::int64_t n_layer, std::int64_t n_embd, std::int64_t block_size,
                                 std::int64_t vocab);

// Training FLOPs per sample of a dense network with these layer widths (input first, classes last):
// 6 x the sum of in x out over its layers.
double dense_train_flops_per_sample(const std::vector<int>& widths);

// Training FLOPs per unit of throughput (a token for the gpt, a sample for the mlp); 0 for the models
// whose FLOPs troupe does not count yet (cnn, lstm).
double train_flops_per_unit(const ModelConfig& model);

// Model FLOPs per second at `units_per_s`, and that as a fraction of `peak_flops_per_s` (0 when the
// peak is unknown).
double model_flops_per_s(double flops_per_unit, double units_per_s);
double mfu(double flops_per_s, double peak_flops_per_s);

}  // namespace troupe
