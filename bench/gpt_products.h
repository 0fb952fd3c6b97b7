// Owns what the matrix-product benchmarks share: the GPT's products at one width and row count, the
// command-line flags that size them, and best-of-N timing.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace troupe::bench {

// C[m, n] = op(A)[m, k] op(B)[k, n], op a transpose where trans_a / trans_b say; A and B stored densely.
struct Product {
  std::string name;
  bool trans_a, trans_b;
  std::int64_t m, n, k;
  std::int64_t lda() const { return trans_a ? m : k; }  // row stride of A as stored
  std::int64_t ldb() const { return trans_b ? k : n; }
};

struct ProductFlags {
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::int64_t width = 256, rows = 16 * 128, vocab = 256;
  int reps = 10;
};

// --threads, --width, --rows, --reps; false (after a message naming `program`) on an unknown flag.
inline bool parse_product_flags(int argc, char** argv, const char* program, ProductFlags& f) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const long long v = std::atoll(argv[i + 1]);
    if (flag == "--threads") f.threads = static_cast<int>(v);
    else if (flag == "--width") f.width = v;
    else if (flag == "--rows") f.rows = v;
    else if (flag == "--reps") f.reps = static_cast<int>(v);
    else {
      std::fprintf(stderr, "%s: unknown option %s (--threads, --width, --rows, --reps)\n", program, argv[i]);
      return false;
    }
  }
  return true;
}

// Every linear of a GPT block and the head, each as its forward, input-gradient and weight-gradient product.
inline std::vector<Product> gpt_products(const ProductFlags& f) {
  const std::int64_t c = f.width;
  const std::pair<const char*, std::pair<std::int64_t, std::int64_t>> layers[] = {
      {"qkv", {c, 3 * c}}, {"proj", {c, c}}, {"fc", {c, 4 * c}}, {"fc_proj", {4 * c, c}}, {"head", {c, f.vocab}}};
  std::vector<Product> products;
  for (const auto& [name, io] : layers) {
    const auto [in, out] = io;
    products.push_back({std::string(name) + " y=xW^T", false, true, f.rows, out, in});
    products.push_back({std::string(name) + " dx=dyW", false, false, f.rows, in, out});
    products.push_back({std::string(name) + " dW=dy^Tx", true, false, out, in, f.rows});
  }
  return products;
}

// The fastest of `reps` timed calls of f, after one untimed warm-up call.
template <class F>
double best_seconds(int reps, F f) {
  f();
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace troupe::bench
