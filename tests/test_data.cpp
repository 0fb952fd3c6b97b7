// Owns the dataset tests: TextDataset's split and documented orders, the built-in corpus, Fashion-MNIST loading and its orders, bad files.
#include <catch2/catch.hpp>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "runtime/data/fashion_mnist.h"
#include "runtime/data/text_dataset.h"
#include "runtime/error.h"

using namespace troupe;
namespace fs = std::filesystem;

namespace {

std::vector<std::uint8_t> random_bytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::uint8_t> v(n);
  for (auto& b : v) b = static_cast<std::uint8_t>(rng() & 0xff);
  return v;
}

// The documented hash (README, "Data order"), written out independently of text_dataset.cpp.
std::uint64_t documented_hash(std::uint64_t seed, std::uint64_t index) {
  std::uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::vector<std::int32_t> ids_of(const Tensor& t) { return std::vector<std::int32_t>(t.i32(), t.i32() + t.numel()); }

// Checks that batch row b holds x = bytes[base + start ..], y = the same shifted by one.
void check_sample(const Batch& batch, int block, int b, const std::vector<std::uint8_t>& bytes, std::int64_t base,
                  std::int64_t start) {
  INFO("sample " << b << " expected at byte " << base + start);
  bool ok = true;
  for (int t = 0; t < block; ++t) {
    ok &= batch.inputs.i32()[b * block + t] == bytes[base + start + t];
    ok &= batch.targets.i32()[b * block + t] == bytes[base + start + t + 1];
  }
  CHECK(ok);
}

// A fresh directory under the system temp dir, removed with its contents at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    std::random_device rd;
    path = fs::temp_directory_path() / ("troupe_test_data_" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

void write_bytes(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_gz(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

// An IDX file of unsigned bytes: magic 0x00000803 / 0x00000801, big-endian dims, payload.
std::vector<std::uint8_t> idx_file(const std::vector<std::uint32_t>& dims, const std::vector<std::uint8_t>& payload) {
  std::vector<std::uint8_t> out = {0, 0, 0x08, static_cast<std::uint8_t>(dims.size())};
  for (std::uint32_t d : dims)
    for (int shift : {24, 16, 8, 0}) out.push_back(static_cast<std::uint8_t>(d >> shift));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

// A tiny, valid Fashion-MNIST directory: 3 train and 2 test images of 28x28.
void write_tiny_fashion(const TempDir& dir) {
  write_gz(dir.file("train-images-idx3-ubyte.gz"), idx_file({3, 28, 28}, random_bytes(3 * 784, 1)));
  write_gz(dir.file("train-labels-idx1-ubyte.gz"), idx_file({3}, {0, 9, 4}));
  write_gz(dir.file("t10k-images-idx3-ubyte.gz"), idx_file({2, 28, 28}, random_bytes(2 * 784, 2)));
  write_gz(dir.file("t10k-labels-idx1-ubyte.gz"), idx_file({2}, {1, 2}));
}

void check_fashion_error(const TempDir& dir, const std::string& what,
                         const std::string& names = "train-labels-idx1-ubyte.gz") {
  INFO(what);
  try {
    FashionMnist ds(dir.path.string(), false, 1);
    FAIL("loaded a directory with " << what << " (" << ds.train_size() << " train examples)");
  } catch (const Error& e) {
    CHECK(e.is_bad_input());
    CHECK_THAT(e.what(), Catch::Contains(names));  // names the bad file (or value)
  }
}

// The real Fashion-MNIST files read with zlib directly, not through troupe.
struct RawFashion {
  std::vector<std::uint8_t> train_images, train_labels, test_images, test_labels;
};

std::vector<std::uint8_t> gunzip_payload(const std::string& path, std::size_t header) {
  gzFile f = gzopen(path.c_str(), "rb");
  REQUIRE(f != nullptr);
  std::vector<std::uint8_t> all;
  std::vector<std::uint8_t> buf(1 << 20);
  int got;
  while ((got = gzread(f, buf.data(), static_cast<unsigned>(buf.size()))) > 0) all.insert(all.end(), buf.begin(), buf.begin() + got);
  gzclose(f);
  REQUIRE(all.size() >= header);
  return std::vector<std::uint8_t>(all.begin() + static_cast<std::ptrdiff_t>(header), all.end());
}

bool have_fashion() { return fs::exists(std::string(kFashionMnistDir) + "/train-images-idx3-ubyte.gz"); }

const RawFashion& raw_fashion() {
  static const RawFashion raw = [] {
    const std::string d = kFashionMnistDir;
    return RawFashion{gunzip_payload(d + "/train-images-idx3-ubyte.gz", 16), gunzip_payload(d + "/train-labels-idx1-ubyte.gz", 8),
                      gunzip_payload(d + "/t10k-images-idx3-ubyte.gz", 16), gunzip_payload(d + "/t10k-labels-idx1-ubyte.gz", 8)};
  }();
  return raw;
}

// Loaded once and shared by the test cases below (each load decompresses ~30 MB).
const FashionMnist& fashion(bool shuffled, std::uint64_t seed) {
  static std::map<std::pair<bool, std::uint64_t>, std::unique_ptr<FashionMnist>> cache;
  auto& slot = cache[{shuffled, seed}];
  if (!slot) slot = std::make_unique<FashionMnist>(kFashionMnistDir, shuffled, seed);
  return *slot;
}

// FNV-1a of one image's pixels, recovered from the f32 features (x * 255 is exact for x = p / 255).
std::uint64_t image_hash_from_features(const float* x) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (int j = 0; j < 784; ++j) h = (h ^ static_cast<std::uint64_t>(std::lround(x[j] * 255.0f))) * 0x100000001b3ull;
  return h;
}

std::uint64_t image_hash_from_bytes(const std::uint8_t* p) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (int j = 0; j < 784; ++j) h = (h ^ p[j]) * 0x100000001b3ull;
  return h;
}

// Checks row b of a batch against example `index` of the raw training set, exactly.
bool row_is_example(const Batch& batch, int b, std::int64_t index) {
  const RawFashion& raw = raw_fashion();
  const float* x = batch.inputs.f32() + b * 784;
  for (int j = 0; j < 784; ++j)
    if (x[j] != static_cast<float>(raw.train_images[index * 784 + j]) / 255.0f) return false;
  return batch.targets.i32()[b] == raw.train_labels[index];
}

#define SKIP_WITHOUT_FASHION()                                                                   \
  do {                                                                                           \
    if (!have_fashion()) {                                                                       \
      WARN("skipped: " << kFashionMnistDir << " not found (install Debian's dataset-fashion-mnist)"); \
      return;                                                                                    \
    }                                                                                            \
  } while (0)

}  // namespace

// ---------------------------------------------------------------- TextDataset

TEST_CASE("TextDataset trains on the first floor(0.9 N) bytes", "[data]") {
  for (std::size_t n : {100u, 101u, 109u, 999u, 1000u, 1001u, 1009u, 123457u}) {
    TextDataset ds(random_bytes(n, n), 8, TextDataset::Order::sequential, 1, "synthetic");
    INFO("N = " << n);
    CHECK(ds.train_size() == static_cast<std::int64_t>(n * 9 / 10));
    CHECK(ds.val_size() == static_cast<std::int64_t>(n - n * 9 / 10));
    CHECK(ds.rows_per_sample() == 8);
  }
}

TEST_CASE("TextDataset sequential order follows ((i*B + b)*T) mod (N_train - T - 1)", "[data]") {
  const std::vector<std::uint8_t> bytes = random_bytes(1000, 3);  // N_train = 900
  constexpr int T = 8, B = 4;
  const std::int64_t n_train = 900, range = n_train - T - 1;
  TextDataset ds(bytes, T, TextDataset::Order::sequential, 1, "synthetic");
  REQUIRE(ds.train_size() == n_train);
  for (std::int64_t step : {0, 1, 2, 27, 28, 100, 12345}) {  // 28 * 4 * 8 > 891: wraps around
    const Batch batch = ds.train_batch(step, B);
    REQUIRE(batch.inputs.shape() == Shape{B, T});
    REQUIRE(batch.targets.shape() == Shape{B, T});
    REQUIRE(batch.inputs.dtype() == DType::i32);
    for (int b = 0; b < B; ++b) {
      const std::int64_t start = ((step * B + b) * T) % range;
      INFO("step " << step << ", b " << b);
      CHECK(ds.train_start(step, B, b) == start);
      check_sample(batch, T, b, bytes, 0, start);
    }
  }
  // Never reads past the training split: the last possible start is range - 1.
  for (std::int64_t step = 0; step < 200; ++step)
    for (int b = 0; b < B; ++b) CHECK(ds.train_start(step, B, b) + T + 1 <= n_train);
}

TEST_CASE("TextDataset validation batches use the sequential formula over the held-out bytes", "[data]") {
  const std::vector<std::uint8_t> bytes = random_bytes(1000, 4);  // validation = bytes [900, 1000)
  constexpr int T = 8, B = 3;
  const std::int64_t split = 900, range = 100 - T - 1;
  for (auto order : {TextDataset::Order::sequential, TextDataset::Order::shuffled}) {
    TextDataset ds(bytes, T, order, 9, "synthetic");
    for (std::int64_t k : {0, 1, 4, 5, 77}) {
      const Batch batch = ds.eval_batch(k, B);
      for (int b = 0; b < B; ++b) check_sample(batch, T, b, bytes, split, ((k * B + b) * T) % range);
    }
  }
}

TEST_CASE("TextDataset shuffled order is the documented hash, fixed by the seed", "[data]") {
  const std::vector<std::uint8_t> bytes = random_bytes(5000, 5);
  constexpr int T = 16, B = 4;
  const std::int64_t range = 4500 - T - 1;
  TextDataset a(bytes, T, TextDataset::Order::shuffled, 42, "synthetic");
  TextDataset again(bytes, T, TextDataset::Order::shuffled, 42, "synthetic");
  TextDataset other(bytes, T, TextDataset::Order::shuffled, 43, "synthetic");
  for (std::uint64_t i : {0ull, 1ull, 7ull, 1000ull}) CHECK(order_hash(42, i) == documented_hash(42, i));
  int differs = 0;
  for (std::int64_t step = 0; step < 20; ++step) {
    const Batch ba = a.train_batch(step, B), bb = again.train_batch(step, B), bo = other.train_batch(step, B);
    CHECK(ids_of(ba.inputs) == ids_of(bb.inputs));
    for (int b = 0; b < B; ++b) {
      const std::int64_t start = static_cast<std::int64_t>(documented_hash(42, static_cast<std::uint64_t>(step * B + b)) %
                                                           static_cast<std::uint64_t>(range));
      CHECK(a.train_start(step, B, b) == start);
      check_sample(ba, T, b, bytes, 0, start);
      differs += other.train_start(step, B, b) != start;
    }
  }
  CHECK(differs >= 70);  // another seed, another order (80 samples; a few may coincide by chance)
  // Not the sequential order either.
  TextDataset seq(bytes, T, TextDataset::Order::sequential, 42, "synthetic");
  CHECK(ids_of(seq.train_batch(3, B).inputs) != ids_of(a.train_batch(3, B).inputs));
}

TEST_CASE("TextDataset refuses a text too short for one block, naming its size", "[data]") {
  constexpr int T = 8;
  // Each split needs T + 2 bytes: N = 100 splits 90 / 10, fine; N = 90 splits 81 / 9, too short.
  CHECK_NOTHROW(TextDataset(random_bytes(100, 6), T, TextDataset::Order::sequential, 1, "ok.txt"));
  for (std::size_t n : {0u, 1u, 20u, 90u}) {
    INFO("N = " << n);
    try {
      TextDataset ds(random_bytes(n, 7), T, TextDataset::Order::sequential, 1, "tiny.txt");
      FAIL("accepted " << n << " bytes");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kInput);
      CHECK_THAT(e.what(), Catch::Contains(std::to_string(n) + " bytes"));
      CHECK_THAT(e.what(), Catch::Contains("tiny.txt"));
    }
  }
}

TEST_CASE("the built-in corpus is /usr/share/common-licenses' regular files, sorted and concatenated", "[data]") {
  const fs::path dir = "/usr/share/common-licenses";
  if (!fs::is_directory(dir)) {
    WARN("skipped: " << dir << " not found");
    return;
  }
  // What `find DIR -maxdepth 1 -type f | LC_ALL=C sort | xargs cat` gives: symlinks excluded.
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir))
    if (fs::symlink_status(entry.path()).type() == fs::file_type::regular) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
    return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(),
                                        [](char x, char y) { return static_cast<unsigned char>(x) < static_cast<unsigned char>(y); });
  });
  std::vector<std::uint8_t> expected;
  std::uintmax_t total = 0;
  for (const auto& n : names) {
    total += fs::file_size(dir / n);
    const auto bytes = read_bytes((dir / n).string());
    expected.insert(expected.end(), bytes.begin(), bytes.end());
  }
  REQUIRE(expected.size() == total);

  const std::vector<std::uint8_t> corpus = load_default_corpus();
  CHECK(corpus.size() == total);
  CHECK(corpus == expected);

  // The literal shell pipeline, when a shell is at hand.
  if (FILE* p = popen("find /usr/share/common-licenses -maxdepth 1 -type f | LC_ALL=C sort | xargs cat | wc -c", "r")) {
    char line[64] = {0};
    const bool read = std::fgets(line, sizeof line, p) != nullptr;
    if (pclose(p) == 0 && read) CHECK(std::stoull(line) == corpus.size());
  }

  const TextDataset ds(corpus, 64, TextDataset::Order::shuffled, 1337, "built-in corpus");
  CHECK(ds.train_size() == static_cast<std::int64_t>(corpus.size() * 9 / 10));
  CHECK_THAT(ds.describe(), Catch::Contains(std::to_string(corpus.size())));
}

TEST_CASE("load_file_bytes reads a file whole and names a missing one", "[data]") {
  TempDir dir;
  const std::vector<std::uint8_t> bytes = random_bytes(3000, 8);
  write_bytes(dir.file("a.bin"), bytes);
  CHECK(load_file_bytes(dir.file("a.bin")) == bytes);
  try {
    load_file_bytes(dir.file("missing.txt"));
    FAIL("no error for a missing file");
  } catch (const Error& e) {
    CHECK(e.is_bad_input());
    CHECK_THAT(e.what(), Catch::Contains("missing.txt"));
  }
}

// ---------------------------------------------------------------- Fashion-MNIST

TEST_CASE("Fashion-MNIST loads 60000 train and 10000 test examples in 0..1 with labels 0..9", "[data]") {
  SKIP_WITHOUT_FASHION();
  const FashionMnist& ds = fashion(false, 1);
  CHECK(ds.train_size() == 60000);
  CHECK(ds.test_size() == 10000);
  CHECK(ds.rows_per_sample() == 1);
  REQUIRE(raw_fashion().train_images.size() == 60000u * 784u);
  REQUIRE(raw_fashion().test_labels.size() == 10000u);

  const Batch batch = ds.train_batch(0, 1000);
  REQUIRE(batch.inputs.shape() == Shape{1000, 784});
  REQUIRE(batch.targets.shape() == Shape{1000});
  const std::vector<float> x = batch.inputs.to_vector();
  CHECK(*std::min_element(x.begin(), x.end()) == 0.0f);
  CHECK(*std::max_element(x.begin(), x.end()) == 1.0f);
  std::set<int> labels;
  for (int b = 0; b < 1000; ++b) labels.insert(batch.targets.i32()[b]);
  CHECK(labels == std::set<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});

  // Evaluation walks the test set in order; the last batch is partial.
  CHECK(ds.eval_batches_full(64) == 157);
  const Batch last = ds.eval_batch(156, 64);
  CHECK(last.inputs.dim(0) == 10000 - 156 * 64);
  const Batch first = ds.eval_batch(0, 64);
  bool same = true;
  for (int b = 0; b < 64; ++b) {
    same &= first.targets.i32()[b] == raw_fashion().test_labels[b];
    for (int j = 0; j < 784; ++j)
      same &= first.inputs.f32()[b * 784 + j] == static_cast<float>(raw_fashion().test_images[b * 784 + j]) / 255.0f;
  }
  CHECK(same);
}

TEST_CASE("Fashion-MNIST sequential order takes example (i*B + b) mod N", "[data]") {
  SKIP_WITHOUT_FASHION();
  const FashionMnist& ds = fashion(false, 1);
  constexpr int B = 7;
  for (std::int64_t step : {0, 1, 2, 8571, 8572, 17142, 1000000}) {  // 8571 * 7 = 59997: wraps mid-batch
    const Batch batch = ds.train_batch(step, B);
    for (int b = 0; b < B; ++b) {
      INFO("step " << step << ", b " << b);
      CHECK(row_is_example(batch, b, (step * B + b) % 60000));
    }
  }
}

TEST_CASE("Fashion-MNIST shuffled order is a permutation within each epoch, fixed by the seed", "[data]") {
  SKIP_WITHOUT_FASHION();
  const FashionMnist& ds = fashion(true, 1);
  const RawFashion& raw = raw_fashion();
  std::vector<std::uint64_t> all_images;
  std::vector<int> label_count(10, 0);
  for (std::int64_t i = 0; i < 60000; ++i) {
    all_images.push_back(image_hash_from_bytes(raw.train_images.data() + i * 784));
    ++label_count[raw.train_labels[i]];
  }
  std::sort(all_images.begin(), all_images.end());

  constexpr int B = 1000;  // 60 steps per epoch
  std::vector<std::vector<std::uint64_t>> order(2);
  for (int epoch = 0; epoch < 2; ++epoch) {
    std::vector<int> labels(10, 0);
    for (std::int64_t step = epoch * 60; step < (epoch + 1) * 60; ++step) {
      const Batch batch = ds.train_batch(step, B);
      for (int b = 0; b < B; ++b) {
        order[epoch].push_back(image_hash_from_features(batch.inputs.f32() + b * 784));
        ++labels[batch.targets.i32()[b]];
      }
    }
    std::vector<std::uint64_t> sorted = order[epoch];
    std::sort(sorted.begin(), sorted.end());
    INFO("epoch " << epoch);
    CHECK(sorted == all_images);  // every image exactly once
    CHECK(labels == label_count);
  }
  CHECK(order[0] != order[1]);  // a new permutation each epoch
  // Neither is the sequential order.
  std::vector<std::uint64_t> sequential;
  for (std::int64_t i = 0; i < 60000; ++i) sequential.push_back(image_hash_from_bytes(raw.train_images.data() + i * 784));
  CHECK(order[0] != sequential);

  // A batch is a pure function of position: a 7-wide batch across the epoch boundary holds the same
  // examples as positions 59997..60003 fetched 1000 at a time.
  const Batch straddle = ds.train_batch(8571, 7);
  for (int b = 0; b < 7; ++b) {
    const std::int64_t pos = 59997 + b;
    const std::uint64_t want = order[pos / 60000][pos % 60000];
    CHECK(image_hash_from_features(straddle.inputs.f32() + b * 784) == want);
  }

  // The same seed gives the same batches; another seed another order.
  FashionMnist again(kFashionMnistDir, true, 1);
  CHECK(again.train_batch(5, 64).inputs.to_vector() == ds.train_batch(5, 64).inputs.to_vector());
  CHECK(ids_of(again.train_batch(5, 64).targets) == ids_of(ds.train_batch(5, 64).targets));
  const FashionMnist& other = fashion(true, 2);
  CHECK(other.train_batch(5, 64).inputs.to_vector() != ds.train_batch(5, 64).inputs.to_vector());
}

TEST_CASE("Fashion-MNIST: truncated, corrupt or malformed .gz files give troupe::Error", "[data]") {
  // Synthetic files written with zlib, so this runs without the real dataset.
  TempDir dir;
  write_tiny_fashion(dir);
  {
    FashionMnist ok(dir.path.string(), false, 1);
    CHECK(ok.train_size() == 3);
    CHECK(ok.test_size() == 2);
    CHECK(ok.train_batch(0, 3).targets.i32()[1] == 9);
  }
  const std::string labels = dir.file("train-labels-idx1-ubyte.gz");
  const std::vector<std::uint8_t> good = read_bytes(labels);
  REQUIRE(good.size() > 20);

  SECTION("truncated to half") {
    write_bytes(labels, std::vector<std::uint8_t>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(good.size() / 2)));
    check_fashion_error(dir, "a .gz cut in half");
  }
  SECTION("gzip trailer missing (all data present, stream unfinished)") {
    write_bytes(labels, std::vector<std::uint8_t>(good.begin(), good.end() - 8));
    check_fashion_error(dir, "a .gz without its CRC/size trailer");
  }
  SECTION("CRC mismatch") {
    std::vector<std::uint8_t> bad = good;
    bad[bad.size() - 8] ^= 0xff;  // first byte of the CRC-32
    write_bytes(labels, bad);
    check_fashion_error(dir, "a .gz with a wrong CRC");
  }
  SECTION("empty file") {
    write_bytes(labels, {});
    check_fashion_error(dir, "an empty file");
  }
  SECTION("not gzip and not IDX") {
    const std::string text = "this is not a gzip file, nor an IDX file\n";
    write_bytes(labels, std::vector<std::uint8_t>(text.begin(), text.end()));
    check_fashion_error(dir, "a plain text file");
  }
  SECTION("IDX header promising more data than there is") {
    write_gz(labels, idx_file({3}, {0, 9}));
    check_fashion_error(dir, "a short IDX payload");
  }
  SECTION("label outside 0..9") {
    write_gz(labels, idx_file({3}, {0, 10, 4}));
    check_fashion_error(dir, "a label of 10", "label 10");
  }
  SECTION("file missing") {
    fs::remove(labels);
    check_fashion_error(dir, "a missing file");
  }
}
