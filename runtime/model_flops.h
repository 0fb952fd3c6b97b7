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

// Training FLOPs per image of the residual CNN (models/cnn_layers.h): 6 x the multiply-adds of its
// convolutions (stem, two 3x3 per block, the 1x1 projection where a block changes shape) and its classifier,
// for side x side single-channel images.
double cnn_train_flops_per_sample(const std::vector<int>& channels, const std::vector<int>& blocks, int side,
                                  int stem_stride, int classes);

// Training FLOPs per token of the stacked LSTM (models/lstm_layers.h, input width = hidden): 6 x (per layer
// the four gates' input and recurrent products, 8 H^2, and the head's V H).
double lstm_train_flops_per_token(std::int64_t n_layer, std::int64_t hidden, std::int64_t vocab);

// Training FLOPs per unit of throughput (a token for the gpt and the lstm, a sample for the mlp and the cnn);
// 0 for deepfm, whose step is embedding lookups on parameter servers more than products: no MFU printed.
double train_flops_per_unit(const ModelConfig& model);

// Model FLOPs per second at `units_per_s`, and that as a fraction of `peak_flops_per_s` (0 when the
// peak is unknown).
double model_flops_per_s(double flops_per_unit, double units_per_s);
double mfu(double flops_per_s, double peak_flops_per_s);

}  // namespace troupe
