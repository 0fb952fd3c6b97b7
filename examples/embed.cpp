// Embedding troupe in an application: a 2-stage pipeline of CAF actors trains a small GPT, and the
// application reads losses as they come. Built in CI; README.md and docs/embedding.md quote the region between
// the [quote] markers, and CTest docs_quote_examples fails when they differ from it.
#include <cstdio>

#include "actors/session.h"
#include "runtime/config/config_loader.h"

int main(int argc, char** argv) {
  // Settings as `troupe train --set` takes them; the rest keep their defaults.
  troupe::RunConfig config;
  try {
    config = troupe::load_config(std::nullopt, {"model.n_layer=2", "model.n_embd=64", "model.block_size=64",
                                                "parallel.pipeline=2", "parallel.microbatches=4",
                                                "train.steps=30", "optim.lr=3e-3"});
  } catch (const troupe::Error& e) {
    std::fprintf(stderr, "bad configuration: %s\n", e.what());
    return 2;
  }

  // [quote begin]
  auto session = troupe::Session::create(config);
  if (!session) {
    std::fprintf(stderr, "cannot start: %s\n", session.error().what());
    return 1;
  }
  std::printf("training %lld parameters on %d pipeline stages\n",
              static_cast<long long>((*session)->parameter_count()), config.parallel.pipeline);

  for (std::int64_t i = 0; i < config.train.steps; ++i) {
    auto stats = (*session)->step();
    if (!stats) {
      std::fprintf(stderr, "step %lld failed: %s\n", static_cast<long long>(i), stats.error().what());
      return 1;
    }
    if (i % 10 == 0 || i + 1 == config.train.steps)
      std::printf("step %3lld  loss %.4f  %.0f tokens/s\n", static_cast<long long>(i), stats->loss, stats->tokens_per_s);
  }
  // [quote end]
  auto eval = (*session)->evaluate();
  if (!eval) return 1;
  std::printf("validation loss %.4f\n", eval->loss);
  return 0;  // the session (and its actors) shut down with it
}
