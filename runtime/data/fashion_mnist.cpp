// FashionMnist: IDX parsing through zlib and batch gathering.
#include "runtime/data/fashion_mnist.h"

#include <zlib.h>

#include <filesystem>

#include "runtime/error.h"

namespace troupe {

std::vector<std::uint8_t> read_idx_gz(const std::string& path, int expected_dims, std::vector<std::int64_t>* dims) {
  if (!std::filesystem::exists(path))
    throw Error(ErrorKind::kInput, path + ": missing (install Debian's dataset-fashion-mnist or set data.path to a directory with the IDX files)");
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw Error(ErrorKind::kIo, path + ": cannot open");
  std::vector<std::uint8_t> all;
  std::uint8_t buf[1 << 16];
  int got;
  while ((got = gzread(f, buf, sizeof buf)) > 0) all.insert(all.end(), buf, buf + got);
  int err = 0;
  const char* msg = gzerror(f, &err);
  std::string zmsg = msg ? msg : "";
  gzclose(f);
  if (got < 0 || (err != Z_OK && err != Z_STREAM_END)) throw Error(ErrorKind::kInput, path + ": corrupt gzip stream (" + zmsg + ")");
  auto be32 = [&](std::size_t off) {
    return (std::int64_t(all[off]) << 24) | (std::int64_t(all[off + 1]) << 16) | (std::int64_t(all[off + 2]) << 8) | all[off + 3];
  };
  const std::size_t header = 4 + 4 * static_cast<std::size_t>(expected_dims);
  if (all.size() < header || all[0] != 0 || all[1] != 0 || all[2] != 0x08 || all[3] != expected_dims)
    throw Error(ErrorKind::kInput, path + ": not an IDX file of unsigned bytes with " + std::to_string(expected_dims) + " dimensions");
  std::int64_t count = 1;
  dims->clear();
  for (int d = 0; d < expected_dims; ++d) {
    dims->push_back(be32(4 + 4 * d));
    count *= dims->back();
  }
  if (static_cast<std::int64_t>(all.size() - header) != count)
    throw Error(ErrorKind::kInput, path + ": header promises " + std::to_string(count) + " bytes of data, file has " +
                                       std::to_string(all.size() - header));
  return std::vector<std::uint8_t>(all.begin() + header, all.end());
}

FashionMnist::FashionMnist(const std::string& dir, bool shuffled, std::uint64_t seed)
    : dir_(dir), shuffled_(shuffled), seed_(seed) {
  std::vector<std::int64_t> dims;
  train_images_ = read_idx_gz(dir + "/train-images-idx3-ubyte.gz", 3, &dims);
  const std::int64_t n_train = dims[0];
  if (dims[1] * dims[2] != 784) throw Error(ErrorKind::kInput, dir + ": images are not 28x28");
  train_labels_ = read_idx_gz(dir + "/train-labels-idx1-ubyte.gz", 1, &dims);
  if (dims[0] != n_train) throw Error(ErrorKind::kInput, dir + ": train images and labels differ in count");
  test_images_ = read_idx_gz(dir + "/t10k-images-idx3-ubyte.gz", 3, &dims);
  const std::int64_t n_test = dims[0];
  test_labels_ = read_idx_gz(dir + "/t10k-labels-idx1-ubyte.gz", 1, &dims);
  if (dims[0] != n_test) throw Error(ErrorKind::kInput, dir + ": test images and labels differ in count");
  for (auto l : train_labels_)
    if (l > 9) throw Error(ErrorKind::kInput, dir + ": train label " + std::to_string(l) + " outside 0..9");
  for (auto l : test_labels_)
    if (l > 9) throw Error(ErrorKind::kInput, dir + ": test label " + std::to_string(l) + " outside 0..9");
}

std::int64_t FashionMnist::train_index(std::int64_t position) const {
  const std::int64_t n = train_size();
  if (!shuffled_) return position % n;
  const std::int64_t epoch = position / n;
  std::lock_guard lock(permutation_mutex_);
  if (epoch != cached_epoch_) {
    permutation_.resize(n);
    for (std::int64_t i = 0; i < n; ++i) permutation_[i] = i;
    for (std::int64_t i = n - 1; i > 0; --i) {
      std::int64_t j = static_cast<std::int64_t>(order_hash(seed_ ^ static_cast<std::uint64_t>(epoch), i) % (i + 1));
      std::swap(permutation_[i], permutation_[j]);
    }
    cached_epoch_ = epoch;
  }
  return permutation_[position % n];
}

Batch FashionMnist::gather(const std::vector<std::uint8_t>& images, const std::vector<std::uint8_t>& labels,
                           const std::vector<std::int64_t>& rows) const {
  const std::int64_t bsz = static_cast<std::int64_t>(rows.size());
  Batch batch{Tensor::empty({bsz, 784}), Tensor::empty({bsz}, DType::i32)};
  float* x = batch.inputs.f32();
  std::int32_t* y = batch.targets.i32();
  for (std::int64_t b = 0; b < bsz; ++b) {
    const std::uint8_t* src = images.data() + rows[b] * 784;
    for (int j = 0; j < 784; ++j) x[b * 784 + j] = static_cast<float>(src[j]) / 255.0f;
    y[b] = labels[rows[b]];
  }
  return batch;
}

Batch FashionMnist::train_batch(std::int64_t step, int batch_size) const {
  std::vector<std::int64_t> rows(batch_size);
  for (int b = 0; b < batch_size; ++b) rows[b] = train_index(step * batch_size + b);
  return gather(train_images_, train_labels_, rows);
}

Batch FashionMnist::eval_batch(std::int64_t k, int batch_size) const {
  std::vector<std::int64_t> rows;
  for (std::int64_t i = k * batch_size; i < std::min<std::int64_t>((k + 1) * batch_size, test_size()); ++i) rows.push_back(i);
  return gather(test_images_, test_labels_, rows);
}

std::int64_t FashionMnist::eval_batches_full(int batch_size) const { return (test_size() + batch_size - 1) / batch_size; }

std::string FashionMnist::describe() const {
  return "Fashion-MNIST from " + dir_ + ": " + std::to_string(train_size()) + " train, " + std::to_string(test_size()) +
         " test images, order " + (shuffled_ ? "shuffled" : "sequential");
}

}  // namespace troupe
