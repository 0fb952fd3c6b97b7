// TextDataset: corpus loading, split and batch construction.
#include "runtime/data/text_dataset.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "runtime/error.h"
#include "runtime/splitmix64.h"

namespace troupe {

namespace fs = std::filesystem;

std::uint64_t order_hash(std::uint64_t seed, std::uint64_t index) {
  return splitmix64_mix(seed + (index + 1) * kSplitMixGamma);
}

std::vector<std::uint8_t> load_file_bytes(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    throw Error(ErrorKind::kInput, "data.path = '" + path + "': no such file (give a readable text file)");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::kIo, "data.path = '" + path + "': cannot open for reading");
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<std::uint8_t> load_default_corpus() {
  const fs::path dir = "/usr/share/common-licenses";
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw Error(ErrorKind::kInput, "the built-in corpus " + dir.string() +
                                       " is missing (it ships with Debian's base-files); set data.path to a text file");
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_regular_file() && !entry.is_symlink()) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());  // bytewise, as C locale
  std::vector<std::uint8_t> all;
  for (const auto& n : names) {
    auto bytes = load_file_bytes((dir / n).string());
    all.insert(all.end(), bytes.begin(), bytes.end());
  }
  return all;
}

TextDataset::TextDataset(std::vector<std::uint8_t> bytes, int block_size, Order order, std::uint64_t seed,
                         std::string source)
    : bytes_(std::move(bytes)),
      split_(static_cast<std::int64_t>(bytes_.size() * 9 / 10)),
      block_(block_size),
      order_(order),
      seed_(seed),
      source_(std::move(source)) {
  const std::int64_t need = block_size + 2;
  if (split_ < need || val_size() < need)
    throw Error(ErrorKind::kInput, source_ + " has " + std::to_string(bytes_.size()) + " bytes: too short for model.block_size " +
                                       std::to_string(block_size) + " (each of the 90%/10% splits needs at least " +
                                       std::to_string(need) + " bytes); use a longer file or a smaller block");
}

std::int64_t TextDataset::train_start(std::int64_t step, int batch_size, int b) const {
  const std::uint64_t index = static_cast<std::uint64_t>(step) * batch_size + b;
  const std::uint64_t range = static_cast<std::uint64_t>(split_ - block_ - 1);
  if (order_ == Order::sequential) return static_cast<std::int64_t>((index * block_) % range);
  return static_cast<std::int64_t>(order_hash(seed_, index) % range);
}

Batch TextDataset::make_batch(std::int64_t base, std::int64_t size, const std::vector<std::int64_t>& starts) const {
  const std::int64_t bsz = static_cast<std::int64_t>(starts.size());
  Batch batch{Tensor::empty({bsz, block_}, DType::i32), Tensor::empty({bsz, block_}, DType::i32)};
  std::int32_t* x = batch.inputs.i32();
  std::int32_t* y = batch.targets.i32();
  for (std::int64_t b = 0; b < bsz; ++b) {
    TROUPE_CHECK(starts[b] + block_ + 1 <= size, "sample start ", starts[b]);
    const std::uint8_t* src = bytes_.data() + base + starts[b];
    for (int t = 0; t < block_; ++t) {
      x[b * block_ + t] = src[t];
      y[b * block_ + t] = src[t + 1];
    }
  }
  return batch;
}

Batch TextDataset::train_batch(std::int64_t step, int batch_size) const {
  std::vector<std::int64_t> starts(batch_size);
  for (int b = 0; b < batch_size; ++b) starts[b] = train_start(step, batch_size, b);
  return make_batch(0, split_, starts);
}

Batch TextDataset::eval_batch(std::int64_t k, int batch_size) const {
  const std::uint64_t range = static_cast<std::uint64_t>(val_size() - block_ - 1);
  std::vector<std::int64_t> starts(batch_size);
  for (int b = 0; b < batch_size; ++b)
    starts[b] = static_cast<std::int64_t>(((static_cast<std::uint64_t>(k) * batch_size + b) * block_) % range);
  return make_batch(split_, val_size(), starts);
}

std::string TextDataset::describe() const {
  return source_ + ": " + std::to_string(bytes_.size()) + " bytes (train " + std::to_string(split_) + ", validation " +
         std::to_string(val_size()) + "), order " + (order_ == Order::sequential ? "sequential" : "shuffled");
}

}  // namespace troupe
