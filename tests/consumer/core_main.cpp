// A CPU-only program on the installed troupe::core: trains two steps, saves the weights, and reads the
// model configuration back from them; a bad key's error names the key, not a command-line flag.
#include <cstdio>
#include <filesystem>
#include <string>

#include <troupe/models/trainer.h>
#include <troupe/runtime/config/config_loader.h>
#include <troupe/runtime/config/weights_config.h>
#include <troupe/runtime/error.h>

int main() {
  const auto config = troupe::load_config(std::nullopt, {"model.n_layer=1", "model.n_embd=32", "model.n_head=2",
                                                         "model.block_size=16", "train.batch_size=2", "train.threads=1"});
  troupe::Trainer trainer(config);
  for (int i = 0; i < 2; ++i) std::printf("consumer_core step %d loss %.4f\n", i, trainer.train_step(i).loss);

  const std::string path = (std::filesystem::temp_directory_path() / "troupe_consumer_core.safetensors").string();
  trainer.save_weights(path);
  const troupe::RunConfig adopted = troupe::adopt_model_config_from_weights(troupe::RunConfig{}, {}, path);
  std::filesystem::remove(path);
  if (!(adopted.model == config.model)) return 1;
  std::printf("consumer_core weights describe their model: n_embd %d\n", adopted.model.n_embd);

  try {
    troupe::load_config(std::nullopt, {"train.stepz=2"});
    return 1;
  } catch (const troupe::Error& e) {
    std::printf("consumer_core error: %s\n", e.what());
    if (std::string(e.what()).find("--") != std::string::npos) return 1;
  }
  return 0;
}
