// Trains two steps of a tiny GPT through the installed troupe package.
#include <cstdio>

#include <troupe/actors/session.h>
#include <troupe/runtime/config/config_loader.h>

int main() {
  auto config = troupe::load_config(std::nullopt, {"model.n_layer=1", "model.n_embd=32", "model.n_head=2",
                                                   "model.block_size=16", "train.batch_size=2", "train.steps=2"});
  auto session = troupe::Session::create(config);
  if (!session) return 1;
  for (int i = 0; i < 2; ++i) {
    auto s = (*session)->step();
    if (!s) return 1;
    std::printf("consumer step %d loss %.4f\n", i, s->loss);
  }
  return 0;
}
