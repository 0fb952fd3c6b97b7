// Owns text generation from a trained language model (gpt, lstm): next-byte choice by temperature and top-k.
//
// Each new token comes from one forward pass over the last model.block_size tokens of the prompt and the
// text so far (the window the model was trained on; for the LSTM, a sequence run from zero state, as in
// training). The next byte is drawn from the last position's distribution p: temperature 0 takes the
// most probable byte (the lowest index among equals), so greedy decoding is reproducible anywhere;
// otherwise p^(1/temperature), restricted to the top_k most probable bytes when top_k > 0, renormalised,
// and sampled with a std::mt19937_64 seeded with `seed`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/model.h"

namespace troupe {

struct SampleOptions {
  int tokens = 200;           // bytes to generate
  double temperature = 1.0;   // 0: greedy
  int top_k = 0;              // 0: every byte
  std::uint64_t seed = 1337;
};

// The `opts.tokens` tokens that follow `prompt` (token ids; at least one) under `model` (a whole model
// ending in a loss layer). block_size: the longest window the model takes.
std::vector<std::int32_t> sample_tokens(Backend& be, Model& model, int block_size, std::vector<std::int32_t> prompt,
                                        const SampleOptions& opts);

// The index sample_tokens picks from one distribution `probs` (exposed for tests); `uniform` is a draw
// from [0, 1), unused when temperature is 0.
int pick_token(const float* probs, int vocab, double temperature, int top_k, double uniform);

}  // namespace troupe
