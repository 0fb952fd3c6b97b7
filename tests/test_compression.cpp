// Owns the gradient-compression tests: each codec on its own (rounding, error bounds, error feedback), compressed allreduce over 1..4 ranks as threads, spec errors, and an SGD convergence check per compressor.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "net/inproc/inproc_transport.h"
#include "runtime/comm/compression/cast_codec.h"
#include "runtime/comm/compression/compressed_ring.h"
#include "runtime/comm/compression/compressor.h"
#include "runtime/comm/compression/int8_codec.h"
#include "runtime/comm/compression/powersgd_compressor.h"
#include "runtime/comm/compression/powersgd_math.h"
#include "runtime/comm/compression/quantized_compressor.h"
#include "runtime/comm/compression/topk_codec.h"
#include "runtime/comm/compression/topk_compressor.h"
#include "runtime/dtype.h"
#include "runtime/error.h"
#include "tests/rank_errors.h"

using namespace troupe;
using namespace troupe::comm;
using Catch::Matchers::Contains;
using namespace std::chrono_literals;

namespace {

// Runs fn(transport) on one thread per rank; a rank's error fails the test, naming the rank.
void spawn(net::InprocWorld& world, const std::function<void(Transport&)>& fn) {
  testing::require_no_errors(testing::spawn_world(world, fn));
}

std::uint64_t mix(std::uint64_t h) {
  h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
  h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
  return h ^ (h >> 31);
}

// Uniform in [-1, 1) from (seed, i).
float uniform(std::uint64_t seed, std::size_t i) {
  return static_cast<float>(static_cast<double>(mix(seed * 0x9E3779B97F4A7C15ull + i + 1) >> 40) / 8388608.0 - 1.0);
}

// Gradient-like values: signed, magnitudes spread over 2^-12 .. 2^4 (so sums depend on rounding order
// and small values sit next to large ones in one block).
float gradient(std::uint64_t seed, std::size_t i) {
  const std::uint64_t h = mix(seed * 0xC2B2AE3D27D4EB4Full + i * 0x9E3779B97F4A7C15ull + 7);
  const float mantissa = 1.0f + static_cast<float>(h & 0xFFFFFF) / 16777216.0f;
  const int exponent = static_cast<int>((h >> 24) % 17) - 12;
  return ((h >> 40) & 1 ? -1.0f : 1.0f) * std::ldexp(mantissa, exponent);
}

std::vector<float> gradients(std::uint64_t seed, std::size_t n) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = gradient(seed, i);
  return v;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

float bits_to_float(std::uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

struct Run {
  std::vector<std::vector<float>> results;  // per rank
  std::vector<CompressStats> stats;         // per rank
};

// One compressed allreduce of data[r] on each of data.size() ranks.
Run run_compressor(const std::string& spec, std::vector<std::vector<float>> data, std::vector<BucketParam> layout = {}) {
  const int ranks = static_cast<int>(data.size());
  net::InprocWorld world(ranks, 5s);
  Run run{std::move(data), std::vector<CompressStats>(static_cast<std::size_t>(ranks))};
  spawn(world, [&](Transport& t) {
    const auto r = static_cast<std::size_t>(t.rank());
    auto comp = make_compressor(spec);
    run.stats[r] = comp->allreduce(t, run.results[r], layout);
  });
  return run;
}

}  // namespace

// ---- fp16 / bf16 casts ----------------------------------------------------------------------------

TEST_CASE("fp16: every half round-trips, and halfway values round to the even neighbour", "[compression]") {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float f = fp16_to_f32(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) {
      REQUIRE(((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0));
      REQUIRE(std::isnan(fp16_to_f32(f32_to_fp16(f))));
      continue;
    }
    REQUIRE(f32_to_fp16(f) == h);
  }
  // Positive finite halves h and h + 1: the midpoint goes to the even one, just below/above it to h / h + 1.
  for (std::uint16_t h = 0; h < 0x7bff; ++h) {
    const float lo = fp16_to_f32(h), hi = fp16_to_f32(static_cast<std::uint16_t>(h + 1));
    const float mid = (lo + hi) / 2;  // exact: halves have 11 significant bits
    CAPTURE(h, lo, hi);
    REQUIRE(f32_to_fp16(mid) == ((h & 1) ? h + 1 : h));
    REQUIRE(f32_to_fp16(std::nextafter(mid, 0.0f)) == h);
    REQUIRE(f32_to_fp16(std::nextafter(mid, 1e9f)) == h + 1);
    REQUIRE(f32_to_fp16(-mid) == (((h & 1) ? h + 1 : h) | 0x8000));
  }
  CHECK(f32_to_fp16(std::ldexp(1.0f, -24)) == 0x0001);  // smallest subnormal
  CHECK(f32_to_fp16(std::ldexp(1.0f, -25)) == 0x0000);  // halfway to 0: even
  CHECK(f32_to_fp16(std::ldexp(3.0f, -25)) == 0x0002);  // halfway 1..2: even
}

TEST_CASE("fp16: the plain cast saturates finite overflow at 65504, inf and NaN pass through", "[compression]") {
  CHECK(f32_to_fp16(65504.0f) == 0x7bff);
  CHECK(f32_to_fp16(65519.99f) == 0x7bff);  // rounds to 65504 anyway
  CHECK(f32_to_fp16(65520.0f) == 0x7bff);   // IEEE would give inf: saturated
  CHECK(f32_to_fp16(1e6f) == 0x7bff);
  CHECK(f32_to_fp16(-3e38f) == 0xfbff);
  CHECK(f32_to_fp16(std::numeric_limits<float>::infinity()) == 0x7c00);
  CHECK(f32_to_fp16(-std::numeric_limits<float>::infinity()) == 0xfc00);
  CHECK(std::isnan(fp16_to_f32(f32_to_fp16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST_CASE("fp16 blocks: a power-of-two scale keeps huge and tiny gradients within 2^-11 relative", "[compression]") {
  for (const float magnitude : {1e-9f, 1e-6f, 1e-3f, 1.0f, 7e4f, 1e6f, 3e30f}) {
    CAPTURE(magnitude);
    std::vector<float> x(1000);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = magnitude * uniform(3, i) * 2;
    std::vector<std::uint16_t> h(x.size());
    const int e = encode_fp16_block(x, h);
    float max = 0;
    for (float v : x) max = std::max(max, std::fabs(v) * std::ldexp(1.0f, e));
    CHECK(max >= 16384.0f);
    CHECK(max < 32768.0f);
    std::vector<float> y(x.size());
    decode_fp16_block(h, e, y);
    for (std::size_t i = 0; i < x.size(); ++i) {
      CAPTURE(i, x[i], y[i]);
      // Normal-range halves: 2^-11 relative; values under max·2^-28: 2^-39 of max absolute.
      REQUIRE(std::fabs(x[i] - y[i]) <= std::max(std::ldexp(std::fabs(x[i]), -11), std::ldexp(magnitude * 2, -39)));
    }
  }
  // Without the scale, plain fp16 loses these completely.
  CHECK(f32_to_fp16(1e-9f) == 0);
  CHECK(fp16_block_exponent(std::vector<float>{}) == 0);
  CHECK(fp16_block_exponent(std::vector<float>{0.0f, 0.0f}) == 0);
  CHECK(fp16_block_exponent(std::vector<float>{1.0f, std::numeric_limits<float>::infinity()}) == 0);
}

TEST_CASE("fp16 blocks: the vector path (F16C where built) gives the scalar cast's bits", "[compression]") {
  // Every half's exact value, its midpoints to the next half, and values just beside them, at one
  // scale: ties, subnormals and the top of the range all pass through encode_fp16_block.
  std::vector<float> x;
  for (std::uint32_t h = 0; h < 0x7800; h += 3) {  // below 2^15: the block exponent stays 0
    const float lo = fp16_to_f32(static_cast<std::uint16_t>(h)), hi = fp16_to_f32(static_cast<std::uint16_t>(h + 1));
    const float mid = (lo + hi) / 2;
    for (float v : {lo, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f)}) {
      x.push_back(v);
      x.push_back(-v);
    }
  }
  x.push_back(20000.0f);  // max in [2^14, 2^15): e = 0
  x.push_back(1.0f);      // an odd length: a scalar tail
  std::vector<std::uint16_t> h(x.size());
  REQUIRE(encode_fp16_block(x, h) == 0);
  for (std::size_t i = 0; i < x.size(); ++i) {
    CAPTURE(i, x[i]);
    REQUIRE(h[i] == f32_to_fp16(x[i]));
  }
  std::vector<float> y(x.size());
  decode_fp16_block(h, 0, y);
  for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(y[i] == fp16_to_f32(h[i]));
  decode_fp16_block(h, 3, y);
  for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(y[i] == fp16_to_f32(h[i]) / 8);
}

TEST_CASE("bf16: halfway values round to even, error at most 2^-8 relative", "[compression]") {
  for (std::uint32_t i = 0; i < 20000; ++i) {
    const auto h = static_cast<std::uint16_t>((mix(i) % 0x7f00) + 0x0080);  // positive normal bf16
    const float lo = bf16_to_f32(h), hi = bf16_to_f32(static_cast<std::uint16_t>(h + 1));
    std::uint32_t lo_bits;
    std::memcpy(&lo_bits, &lo, 4);
    const float mid = bits_to_float(lo_bits | 0x8000);  // lo with the first dropped bit set: exactly halfway
    CAPTURE(h, lo, hi, mid);
    REQUIRE(f32_to_bf16(mid) == ((h & 1) ? h + 1 : h));
    REQUIRE(f32_to_bf16(std::nextafter(mid, 0.0f)) == h);
    REQUIRE(f32_to_bf16(std::nextafter(mid, std::numeric_limits<float>::infinity())) == h + 1);
  }
  std::vector<float> x(5000), y(5000);
  std::vector<std::uint16_t> h(5000);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = gradient(11, i) * 1e-5f;
  encode_bf16(x, h);
  decode_bf16(h, y);
  for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(std::fabs(x[i] - y[i]) <= std::ldexp(std::fabs(x[i]), -8));
}

// ---- int8 -----------------------------------------------------------------------------------------

TEST_CASE("int8: per-chunk scales bound the error by half a step of each chunk's own scale", "[compression]") {
  const std::size_t n = GENERATE(as<std::size_t>{}, 0, 1, 255, 256, 257, 3000);
  CAPTURE(n);
  std::vector<float> x(n);
  // Each chunk has its own magnitude (1e-6 .. 1e2), so one shared scale would wipe out the small ones.
  for (std::size_t i = 0; i < n; ++i) x[i] = uniform(5, i) * std::pow(10.0f, static_cast<float>((i / kInt8Chunk) % 9) - 6);
  if (n > 300) std::fill(x.begin() + 256, x.begin() + 512, 0.0f);  // an all-zero chunk
  std::vector<float> scales(int8_scale_count(n)), y(n);
  std::vector<std::int8_t> q(n);
  CHECK(scales.size() == (n + 255) / 256);
  quantize_int8(x, scales, q);
  dequantize_int8(scales, q, y);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t c = i / kInt8Chunk;
    float max = 0;
    for (std::size_t j = c * kInt8Chunk; j < std::min(n, (c + 1) * kInt8Chunk); ++j) max = std::max(max, std::fabs(x[j]));
    CAPTURE(i, x[i], y[i], scales[c]);
    REQUIRE(scales[c] == max / 127.0f);
    REQUIRE(std::fabs(x[i] - y[i]) <= scales[c] / 2 * (1 + std::ldexp(1.0f, -13)));
    REQUIRE(std::abs(static_cast<int>(q[i])) <= 127);
  }
  if (n > 300)
    for (std::size_t i = 256; i < 512; ++i) REQUIRE(y[i] == 0.0f);
}

TEST_CASE("int8: a chunk with inf or NaN decodes as NaN, other chunks are unaffected", "[compression]") {
  std::vector<float> x(600, 0.5f);
  x[10] = std::numeric_limits<float>::infinity();
  x[300] = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> scales(3), y(600);
  std::vector<std::int8_t> q(600);
  quantize_int8(x, scales, q);
  dequantize_int8(scales, q, y);
  CHECK(std::isnan(y[0]));
  CHECK(std::isnan(y[255]));
  CHECK(std::isnan(y[256]));
  CHECK(y[599] == 0.5f);
}

// ---- top-k ----------------------------------------------------------------------------------------

TEST_CASE("top-k: k = ceil(fraction·n), ties go to the lower index, NaN is selected first", "[compression]") {
  CHECK(topk_count(0, 0.1) == 0);
  CHECK(topk_count(1, 0.001) == 1);
  CHECK(topk_count(300, 0.01) == 3);
  CHECK(topk_count(301, 0.01) == 4);
  CHECK(topk_count(10, 1.0) == 10);
  std::vector<std::uint32_t> scratch, out;
  const std::vector<float> acc{1, -3, 3, 0, 2, -3};
  select_topk(acc, 3, scratch, out);
  CHECK(out == std::vector<std::uint32_t>{1, 2, 5});
  select_topk(acc, 2, scratch, out);
  CHECK(out == std::vector<std::uint32_t>{1, 2});
  select_topk(std::vector<float>{1, std::numeric_limits<float>::quiet_NaN(), 5}, 1, scratch, out);
  CHECK(out == std::vector<std::uint32_t>{1});
  select_topk(acc, 6, scratch, out);
  CHECK(out == std::vector<std::uint32_t>{0, 1, 2, 3, 4, 5});
}

TEST_CASE("top-k: the sampled-threshold path selects exactly what a full sort does, ties included", "[compression]") {
  const std::size_t n = 200000;
  REQUIRE(n >= kTopKSampledFrom);
  const int levels = GENERATE(3, 50, 100000);  // few levels: ties everywhere
  CAPTURE(levels);
  std::vector<float> acc(n);
  for (std::size_t i = 0; i < n; ++i) acc[i] = std::round(uniform(21, i) * levels) / levels;
  std::vector<std::uint32_t> order(n);
  for (std::uint32_t i = 0; i < n; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
    return std::fabs(acc[a]) != std::fabs(acc[b]) ? std::fabs(acc[a]) > std::fabs(acc[b]) : a < b;
  });
  std::vector<std::uint32_t> scratch, out;
  for (std::size_t k : {std::size_t{1}, std::size_t{200}, std::size_t{2000}, n / 8, n / 2}) {
    CAPTURE(k);
    std::vector<std::uint32_t> want(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k));
    std::sort(want.begin(), want.end());
    select_topk(acc, k, scratch, out);
    REQUIRE(out == want);
  }
}

TEST_CASE("top-k error feedback: a constant gradient reaches every coordinate within ceil(1/fraction) steps", "[compression]") {
  const double fraction = GENERATE(0.1, 0.03, 0.5);
  CAPTURE(fraction);
  const std::size_t n = 1000;
  const std::size_t k = topk_count(n, fraction);
  const auto steps = static_cast<int>(std::ceil(1.0 / fraction));
  std::vector<float> residual(n, 0.0f), grad(n, 0.25f), total(n, 0.0f);
  std::vector<std::uint32_t> scratch;
  SparseGrad sent;
  std::set<std::uint32_t> reached;
  for (int s = 0; s < steps; ++s) {
    topk_with_feedback(grad, residual, k, scratch, sent);
    REQUIRE(sent.indices.size() == k);
    for (std::size_t j = 0; j < k; ++j) {
      reached.insert(sent.indices[j]);
      total[sent.indices[j]] += sent.values[j];
    }
  }
  CHECK(reached.size() == n);
  // Nothing is lost: sent so far + what is still owed = every step's gradient.
  for (std::size_t i = 0; i < n; ++i) REQUIRE(total[i] + residual[i] == Approx(0.25 * steps).epsilon(1e-6));
}

TEST_CASE("top-k error feedback: the sum of what was sent tracks the sum of the true gradients", "[compression]") {
  const std::size_t n = 2000;
  std::vector<float> residual(n, 0.0f), sent_total(n, 0.0f);
  std::vector<double> true_total(n, 0.0);
  std::vector<std::uint32_t> scratch;
  SparseGrad sent;
  double max_residual = 0;
  for (int step = 0; step < 200; ++step) {
    std::vector<float> g(n);
    for (std::size_t i = 0; i < n; ++i) {
      g[i] = 0.01f * uniform(100 + step, i) + 0.002f * uniform(7, i);  // noise around a fixed mean
      true_total[i] += g[i];
    }
    topk_with_feedback(g, residual, topk_count(n, 0.05), scratch, sent);
    for (std::size_t j = 0; j < sent.indices.size(); ++j) sent_total[sent.indices[j]] += sent.values[j];
    for (std::size_t i = 0; i < n; ++i) REQUIRE(sent_total[i] + residual[i] == Approx(true_total[i]).margin(1e-5));
  }
  for (float r : residual) max_residual = std::max(max_residual, static_cast<double>(std::fabs(r)));
  // The residual stays bounded (it does not grow with the number of steps), so sent/true → 1.
  CHECK(max_residual < 0.2);
  double sent_norm = 0, true_norm = 0;
  for (std::size_t i = 0; i < n; ++i) {
    sent_norm += std::fabs(sent_total[i]);
    true_norm += std::fabs(true_total[i]);
  }
  CHECK(sent_norm / true_norm > 0.9);
}

// ---- PowerSGD kernels -----------------------------------------------------------------------------

TEST_CASE("powersgd: which matrices are compressed, Gram-Schmidt gives orthonormal columns", "[compression]") {
  CHECK(powersgd_compresses(100, 50, 4));
  CHECK_FALSE(powersgd_compresses(100, 1, 1));  // a vector
  CHECK_FALSE(powersgd_compresses(3, 3, 2));    // (3 + 3)·2 = 12 > 9
  CHECK_FALSE(powersgd_compresses(8, 4, 4));    // rank not below both sides
  CHECK(powersgd_compresses(8, 8, 3));          // 48 < 64

  const std::size_t rows = 50, r = 4;
  std::vector<float> p(rows * r);
  fill_normal(p, 42);
  for (std::size_t i = 0; i < rows; ++i) p[i * r + 2] = p[i * r + 0] * 3;  // column 2 depends on column 0
  orthogonalize_columns(p, rows, r);
  for (std::size_t a = 0; a < r; ++a) {
    for (std::size_t b = 0; b < r; ++b) {
      double dot = 0;
      for (std::size_t i = 0; i < rows; ++i) dot += static_cast<double>(p[i * r + a]) * p[i * r + b];
      CAPTURE(a, b);
      const double want = (a == b && a != 2) ? 1.0 : 0.0;  // the dependent column is dropped to zeros
      CHECK(dot == Approx(want).margin(1e-5));
    }
  }
  std::vector<float> zero(rows * r, 0.0f);
  orthogonalize_columns(zero, rows, r);
  for (float v : zero) REQUIRE(v == 0.0f);
}

TEST_CASE("powersgd kernels: M·Q, Mᵀ·P and P·Qᵀ match a double-precision reference", "[compression]") {
  const std::size_t rows = 13, cols = 37, r = 3;  // cols not a multiple of 8: the kernels' tails run
  std::vector<float> m(rows * cols), q(cols * r), p(rows * r);
  for (std::size_t i = 0; i < m.size(); ++i) m[i] = uniform(31, i);
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = uniform(32, i);
  for (std::size_t i = 0; i < p.size(); ++i) p[i] = uniform(33, i);
  std::vector<float> mq(rows * r), mtp(cols * r), pqt(rows * cols);
  matmul_mq(m, q, rows, cols, r, mq);
  matmul_mtp(m, p, rows, cols, r, mtp);
  matmul_pqt(p, q, rows, cols, r, pqt);
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t k = 0; k < r; ++k) {
      double want = 0;
      for (std::size_t j = 0; j < cols; ++j) want += static_cast<double>(m[i * cols + j]) * q[j * r + k];
      REQUIRE(mq[i * r + k] == Approx(want).margin(1e-5));
    }
  for (std::size_t j = 0; j < cols; ++j)
    for (std::size_t k = 0; k < r; ++k) {
      double want = 0;
      for (std::size_t i = 0; i < rows; ++i) want += static_cast<double>(m[i * cols + j]) * p[i * r + k];
      REQUIRE(mtp[j * r + k] == Approx(want).margin(1e-5));
    }
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j) {
      double want = 0;
      for (std::size_t k = 0; k < r; ++k) want += static_cast<double>(p[i * r + k]) * q[j * r + k];
      REQUIRE(pqt[i * cols + j] == Approx(want).margin(1e-5));
    }
}

// ---- compressed allreduce over ranks ---------------------------------------------------------------

TEST_CASE("compressed allreduce: cast and int8 codecs sum within their bounds, bitwise equal on every rank", "[compression]") {
  const std::string spec = GENERATE("none", "fp16", "bf16", "int8");
  const int ranks = GENERATE(1, 2, 3, 4);
  const std::size_t n = GENERATE(as<std::size_t>{}, 0, 1, 7, 1000, 20000);
  CAPTURE(spec, ranks, n);
  std::vector<std::vector<float>> data;
  for (int r = 0; r < ranks; ++r) data.push_back(gradients(static_cast<std::uint64_t>(r + 1), n));
  const Run run = run_compressor(spec, data);
  for (int r = 0; r < ranks; ++r) REQUIRE(bitwise_equal(run.results[static_cast<std::size_t>(r)], run.results[0]));

  double max_all = 0;  // Σ_r max_i |x_r,i|: bounds every block's largest partial sum
  for (const auto& d : data) {
    double m = 0;
    for (float v : d) m = std::max(m, static_cast<double>(std::fabs(v)));
    max_all += m;
  }
  std::size_t lossy = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double sum = 0, abs_sum = 0;
    for (const auto& d : data) {
      sum += d[i];
      abs_sum += std::fabs(d[i]);
    }
    // Every element is encoded `ranks` times (ranks − 1 partial sums + the final sum), each with the
    // codec's bound on a value ≤ abs_sum (int8: ≤ max_all); plus float32 accumulation.
    const double k = ranks * 1.01;
    double bound = k * std::ldexp(abs_sum, -23);
    if (spec == "fp16") bound += k * (std::ldexp(abs_sum, -11) + std::ldexp(max_all, -38));
    if (spec == "bf16") bound += k * std::ldexp(abs_sum, -8);
    if (spec == "int8") bound += k * max_all / 254 * (1 + std::ldexp(1.0, -13));
    const double got = run.results[0][i];
    if (got != static_cast<float>(sum)) ++lossy;
    CAPTURE(i, sum, got, bound);
    REQUIRE(std::fabs(got - sum) <= bound);
  }
  if (spec != "none" && n >= 1000) CHECK(lossy > 0);  // the bound checks a real loss, not a no-op

  for (int r = 0; r < ranks; ++r) {
    const CompressStats& s = run.stats[static_cast<std::size_t>(r)];
    CHECK(s.bytes_uncompressed == ring_allreduce_bytes(n, ranks, r));
    if (ranks == 1 || n == 0) CHECK(s.bytes_sent == 0);
    if (spec == "none") CHECK(s.bytes_sent == s.bytes_uncompressed);
    if (n == 20000 && ranks > 1) {
      const double want = spec == "none" ? 1.0 : spec == "int8" ? 4.0 * 256 / 260 : 2.0;
      CHECK(s.ratio() == Approx(want).epsilon(0.01));
    }
  }
}

TEST_CASE("compressed allreduce: fp16 sums gradients far above 65504 without overflow", "[compression]") {
  const int ranks = GENERATE(2, 3);
  std::vector<std::vector<float>> data;
  for (int r = 0; r < ranks; ++r) {
    std::vector<float> d(500);
    for (std::size_t i = 0; i < d.size(); ++i) d[i] = 1e5f * (1.5f + uniform(static_cast<std::uint64_t>(r), i));
    data.push_back(d);
  }
  const Run run = run_compressor("fp16", data);
  for (std::size_t i = 0; i < 500; ++i) {
    double sum = 0;
    for (const auto& d : data) sum += d[i];
    REQUIRE(std::isfinite(run.results[0][i]));
    REQUIRE(run.results[0][i] == Approx(sum).epsilon(ranks * std::ldexp(1.0, -11) * 1.01));
  }
}

TEST_CASE("compressed allreduce: top-k sums exactly what each rank selected, in rank order", "[compression]") {
  const int ranks = GENERATE(1, 2, 3, 4);
  const std::size_t n = GENERATE(as<std::size_t>{}, 0, 1, 7, 1000, 20000);
  const double fraction = 0.01;
  CAPTURE(ranks, n);
  std::vector<std::vector<float>> data;
  for (int r = 0; r < ranks; ++r) data.push_back(gradients(static_cast<std::uint64_t>(r + 1), n));
  const Run run = run_compressor("topk:0.01", data);
  for (int r = 0; r < ranks; ++r) REQUIRE(bitwise_equal(run.results[static_cast<std::size_t>(r)], run.results[0]));

  // The reference: a fresh compressor (zero residual) sends each rank's top k; add them in rank order.
  std::vector<float> expected(n, 0.0f);
  std::vector<std::uint32_t> scratch, picked;
  for (const auto& d : data) {
    select_topk(d, topk_count(n, fraction), scratch, picked);
    for (std::uint32_t i : picked) expected[i] += d[i];
  }
  CHECK(bitwise_equal(run.results[0], expected));
  const std::size_t k = topk_count(n, fraction);
  for (int r = 0; r < ranks; ++r) CHECK(run.stats[static_cast<std::size_t>(r)].bytes_sent == (ranks - 1) * 8 * k);
  if (n == 20000 && ranks > 1) CHECK(run.stats[0].ratio() == Approx(1.0 / (ranks * fraction)).epsilon(0.01));
}

TEST_CASE("compressed allreduce: PowerSGD is exact for a low-rank sum, sums vectors exactly, and is identical on every rank", "[compression]") {
  const int ranks = GENERATE(1, 2, 3, 4);
  CAPTURE(ranks);
  const std::size_t rows = 40, cols = 30, r = 2;
  // Bucket: [40x30 matrix][30-vector][3x3 matrix (too small to compress)][5 floats outside any parameter]
  const std::vector<BucketParam> layout{{0, rows, cols}, {1200, 30, 1}, {1230, 3, 3}};
  const std::size_t n = 1244;
  std::vector<float> a(rows * r);
  fill_normal(a, 1);  // the shared left factor: Σ_ranks A·B_rᵀ has rank ≤ 2
  std::vector<std::vector<float>> data;
  for (int k = 0; k < ranks; ++k) {
    std::vector<float> b(cols * r), d = gradients(static_cast<std::uint64_t>(k + 1), n);
    fill_normal(b, static_cast<std::uint64_t>(100 + k));
    matmul_pqt(a, b, rows, cols, r, std::span<float>(d).subspan(0, rows * cols));
    data.push_back(d);
  }
  const Run run = run_compressor("powersgd:2", data, layout);
  for (int k = 0; k < ranks; ++k) REQUIRE(bitwise_equal(run.results[static_cast<std::size_t>(k)], run.results[0]));
  double err = 0, norm = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double sum = 0;
    for (const auto& d : data) sum += d[i];
    if (i < rows * cols) {
      err += (run.results[0][i] - sum) * (run.results[0][i] - sum);
      norm += sum * sum;
    } else {
      CAPTURE(i);
      REQUIRE(run.results[0][i] == Approx(sum).epsilon(1e-5).margin(1e-6));
    }
  }
  CHECK(std::sqrt(err / norm) < 1e-5);
  if (ranks > 1) {
    // (40 + 30)·2 floats for P and Q plus 30 + 9 + 5 exact, against 1244: ≈ 6.9× fewer bytes.
    CHECK(run.stats[0].ratio() == Approx(1244.0 / (140 + 44)).epsilon(0.03));
  }
}

TEST_CASE("PowerSGD error feedback: results plus residuals add up to the true gradients, Q is warm-started", "[compression]") {
  const int ranks = 2;
  const std::size_t rows = 24, cols = 20;
  const std::vector<BucketParam> layout{{0, rows, cols}};
  net::InprocWorld world(ranks, 5s);
  std::vector<std::vector<float>> result_total(ranks, std::vector<float>(rows * cols, 0.0f));
  std::vector<std::vector<float>> residual(ranks);
  std::vector<double> true_total(rows * cols, 0.0);
  std::vector<double> error_at(ranks * 0 + 3, 0.0);  // relative error of the running mean at steps 1, 10, 60
  for (int step = 0; step < 60; ++step)
    for (int k = 0; k < ranks; ++k)
      for (std::size_t i = 0; i < rows * cols; ++i) true_total[i] += gradient(static_cast<std::uint64_t>(k + 1), i) * 0.01;
  spawn(world, [&](Transport& t) {
    const auto me = static_cast<std::size_t>(t.rank());
    PowerSgdCompressor comp(1, "powersgd:1");
    for (int step = 0; step < 60; ++step) {
      std::vector<float> g(rows * cols);  // a fixed full-rank gradient: rank 1 needs many steps to send it
      for (std::size_t i = 0; i < g.size(); ++i) g[i] = gradient(me + 1, i) * 0.01f;
      comp.allreduce(t, g, layout);
      for (std::size_t i = 0; i < g.size(); ++i) result_total[me][i] += g[i];
      if (me == 0 && (step == 0 || step == 9 || step == 59)) {
        double err = 0, norm = 0;
        for (std::size_t i = 0; i < g.size(); ++i) {
          const double want = true_total[i] / 60 * (step + 1);
          err += (result_total[me][i] - want) * (result_total[me][i] - want);
          norm += want * want;
        }
        error_at[step == 0 ? 0 : step == 9 ? 1 : 2] = std::sqrt(err / norm);
      }
    }
    residual[me].assign(comp.residual().begin(), comp.residual().end());
  });
  REQUIRE(bitwise_equal(result_total[0], result_total[1]));
  for (std::size_t i = 0; i < rows * cols; ++i) {
    CAPTURE(i);
    REQUIRE(result_total[0][i] + residual[0][i] + residual[1][i] == Approx(true_total[i]).margin(1e-4));
  }
  CAPTURE(error_at[0], error_at[1], error_at[2]);
  CHECK(error_at[0] > 0.3);             // one rank-1 step misses most of a full-rank gradient
  CHECK(error_at[2] < error_at[0] / 4);  // error feedback catches up
}

TEST_CASE("int8 error feedback: entries below half a quantization step still arrive over steps", "[compression]") {
  // Per chunk of 256 one entry is 1.0 and the rest 0.001, below half a step (1/254): int8 rounds them
  // to 0 every time. With error feedback the loss is owed to the next step and eventually sent.
  const int ranks = 2, steps = 50;
  const std::size_t n = 1024;
  net::InprocWorld world(ranks, 5s);
  std::vector<std::vector<float>> total(ranks, std::vector<float>(n, 0.0f)), owed(ranks);
  spawn(world, [&](Transport& t) {
    const auto me = static_cast<std::size_t>(t.rank());
    auto comp = make_compressor("int8");
    auto* quantized = dynamic_cast<QuantizedCompressor*>(comp.get());
    REQUIRE(quantized);
    for (int s = 0; s < steps; ++s) {
      std::vector<float> g(n, 0.001f);
      for (std::size_t i = 0; i < n; i += kInt8Chunk) g[i] = 1.0f;
      comp->allreduce(t, g, {});
      if (s == 0) CHECK(g[1] == 0.0f);  // the first step loses it
      for (std::size_t i = 0; i < n; ++i) total[me][i] += g[i];
    }
    owed[me].assign(quantized->residual().begin(), quantized->residual().end());
  });
  REQUIRE(bitwise_equal(total[0], total[1]));
  for (std::size_t i = 0; i < n; ++i) {
    const double truth = ranks * steps * (i % kInt8Chunk == 0 ? 1.0 : 0.001);
    CAPTURE(i);
    // Σ results + Σ owed = Σ gradients; what is still owed is under one step per rank and encoding.
    REQUIRE(total[0][i] + owed[0][i] + owed[1][i] == Approx(truth).margin(1e-4));
    REQUIRE(std::fabs(total[0][i] - truth) <= 2.0 * ranks / 254);
  }
  CHECK(total[0][1] > 0.05f);  // 0 without error feedback
}

TEST_CASE("an inf gradient shows in its own step's result and is not carried into the next", "[compression]") {
  const std::string spec = GENERATE("fp16", "bf16", "int8", "topk:0.01", "powersgd:2");
  CAPTURE(spec);
  net::InprocWorld world(2, 5s);
  std::vector<std::vector<float>> first(2), second(2);
  spawn(world, [&](Transport& t) {
    const auto me = static_cast<std::size_t>(t.rank());
    auto comp = make_compressor(spec);
    const std::vector<BucketParam> layout{{0, 20, 30}};
    std::vector<float> g = gradients(me + 1, 600);
    if (me == 0)
      for (std::size_t i = 0; i < 600; i += 7) g[i] = std::numeric_limits<float>::infinity();
    comp->allreduce(t, g, layout);
    first[me] = g;
    g = gradients(me + 3, 600);
    comp->allreduce(t, g, layout);
    second[me] = g;
  });
  CHECK(std::any_of(first[0].begin(), first[0].end(), [](float v) { return !std::isfinite(v); }));
  CHECK(std::all_of(second[0].begin(), second[0].end(), [](float v) { return std::isfinite(v); }));
}

TEST_CASE("compressed allreduce: empty and one-element buckets work for every codec on 1..3 ranks", "[compression]") {
  const std::string spec = GENERATE("none", "fp16", "bf16", "int8", "topk:0.01", "powersgd:4");
  const int ranks = GENERATE(1, 2, 3);
  CAPTURE(spec, ranks);
  for (std::size_t n : {std::size_t{0}, std::size_t{1}}) {
    std::vector<std::vector<float>> data;
    for (int r = 0; r < ranks; ++r) data.push_back(std::vector<float>(n, 0.5f * (r + 1)));
    std::vector<BucketParam> layout;
    if (n == 1) layout.push_back({0, 1, 1});
    const Run run = run_compressor(spec, data, layout);
    for (int r = 0; r < ranks; ++r) REQUIRE(bitwise_equal(run.results[static_cast<std::size_t>(r)], run.results[0]));
    if (n == 1) CHECK(run.results[0][0] == 0.25f * ranks * (ranks + 1));  // exact in every codec
  }
}

TEST_CASE("compressors run step after step on one transport, alongside each other", "[compression]") {
  // Two buckets, each with its own compressor, reduced alternately for several steps: the messages of
  // consecutive calls must not mix, and each compressor keeps its own state.
  net::InprocWorld world(3, 5s);
  std::vector<std::vector<float>> last(3);
  spawn(world, [&](Transport& t) {
    auto a = make_compressor("topk:0.1");
    auto b = make_compressor("int8");
    for (int step = 0; step < 5; ++step) {
      std::vector<float> ga = gradients(static_cast<std::uint64_t>(t.rank() * 10 + step), 300);
      std::vector<float> gb = gradients(static_cast<std::uint64_t>(t.rank() * 10 + step + 5), 700);
      a->allreduce(t, ga, {});
      b->allreduce(t, gb, {});
      ga.insert(ga.end(), gb.begin(), gb.end());
      last[static_cast<std::size_t>(t.rank())] = ga;
    }
  });
  CHECK(bitwise_equal(last[1], last[0]));
  CHECK(bitwise_equal(last[2], last[0]));
}

// ---- errors ---------------------------------------------------------------------------------------

TEST_CASE("make_compressor rejects a bad spec with an Error naming it", "[compression]") {
  for (const std::string spec : {"zip", "topk:", "topk:0", "topk:1.5", "topk:abc", "powersgd:0", "powersgd:x",
                                 "powersgd:", "FP16", ""}) {
    CAPTURE(spec);
    try {
      make_compressor(spec);
      FAIL("accepted");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kConfig);
      CHECK_THAT(e.what(), Contains("comm.compression = \"" + spec + "\""));
      CHECK_THAT(e.what(), Contains("topk:<fraction>"));
    }
  }
  CHECK(make_compressor("topk:0.5")->name() == "topk:0.5");
  CHECK(make_compressor("powersgd:16")->name() == "powersgd:16");
  CHECK(make_compressor("none")->name() == "none");
}

TEST_CASE("a compressor is tied to one bucket, a bad layout is an Error", "[compression]") {
  net::InprocWorld world(1, 5s);
  auto t = world.transport(0);
  for (const std::string spec : {"topk:0.1", "powersgd:2", "int8", "fp16"}) {
    CAPTURE(spec);
    auto comp = make_compressor(spec);
    std::vector<float> g(100, 1.0f), h(50, 1.0f);
    comp->allreduce(*t, g, {});
    try {
      comp->allreduce(*t, h, {});
      FAIL("accepted another bucket");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kShape);
      CHECK_THAT(e.what(), Contains("one compressor per bucket"));
    }
  }
  auto comp = make_compressor("int8");
  std::vector<float> g(100, 1.0f);
  const std::vector<BucketParam> overlap{{0, 10, 5}, {40, 10, 1}};
  const std::vector<BucketParam> outside{{90, 4, 4}};
  CHECK_THROWS_WITH(comp->allreduce(*t, g, overlap), Contains("entry 1") && Contains("overlaps"));
  CHECK_THROWS_WITH(comp->allreduce(*t, g, outside), Contains("does not fit") && Contains("100 floats"));
}

TEST_CASE("a dead rank makes every compressor fail with the transport's error, not hang", "[compression]") {
  const std::string spec = GENERATE("fp16", "int8", "topk:0.1", "powersgd:2");
  CAPTURE(spec);
  net::InprocWorld world(3, 10s);  // long: failing fast must not depend on the timeout
  world.kill(2);
  std::vector<std::string> messages(2);
  std::vector<std::thread> threads;
  const auto start = std::chrono::steady_clock::now();
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r, t = world.transport(r)]() {
      auto comp = make_compressor(spec);
      std::vector<float> g = gradients(static_cast<std::uint64_t>(r), 600);
      try {
        comp->allreduce(*t, g, std::vector<BucketParam>{{0, 20, 30}});
      } catch (const Error& e) {
        if (e.kind() == ErrorKind::kIo) messages[static_cast<std::size_t>(r)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  for (const std::string& m : messages) CHECK_THAT(m, Contains("rank 2 is dead"));
}

// ---- convergence ----------------------------------------------------------------------------------

namespace {

// Least squares, 2 ranks as threads: y = W* x + b* + noise, W 8×16, b 8; each rank holds 64 samples,
// computes the mean-squared-error gradient of its own samples, and the ranks sum it with `spec` (then
// divide by 2: the mean over all 128 samples). Plain SGD for `steps` steps. Returns the final loss over all
// samples, after checking that both ranks hold bitwise-equal weights.
double train_least_squares(const std::string& spec, int steps) {
  constexpr std::size_t kIn = 16, kOut = 8, kPerRank = 64, kRanks = 2, kParams = kOut * kIn + kOut;
  constexpr float kLr = 0.1f;
  std::vector<float> w_true(kParams);
  for (std::size_t i = 0; i < kParams; ++i) w_true[i] = uniform(900, i);
  auto sample_x = [](std::size_t s, std::size_t j) { return uniform(901, s * kIn + j) * 1.7f; };
  auto target = [&](std::size_t s, std::size_t o) {
    float y = w_true[kOut * kIn + o] + 0.1f * uniform(902, s * kOut + o);
    for (std::size_t j = 0; j < kIn; ++j) y += w_true[o * kIn + j] * sample_x(s, j);
    return y;
  };
  // loss(w) over `samples`, and its gradient (mean over those samples) into grad.
  auto loss_and_grad = [&](const std::vector<float>& w, std::size_t first, std::size_t count, std::vector<float>* grad) {
    double loss = 0;
    if (grad) std::fill(grad->begin(), grad->end(), 0.0f);
    for (std::size_t s = first; s < first + count; ++s) {
      for (std::size_t o = 0; o < kOut; ++o) {
        float pred = w[kOut * kIn + o];
        for (std::size_t j = 0; j < kIn; ++j) pred += w[o * kIn + j] * sample_x(s, j);
        const float err = pred - target(s, o);
        loss += 0.5 * err * err;
        if (!grad) continue;
        for (std::size_t j = 0; j < kIn; ++j) (*grad)[o * kIn + j] += err * sample_x(s, j) / count;
        (*grad)[kOut * kIn + o] += err / count;
      }
    }
    return loss / static_cast<double>(count);
  };
  const std::vector<BucketParam> layout{{0, kOut, kIn}, {kOut * kIn, kOut, 1}};
  std::vector<std::vector<float>> weights(kRanks, std::vector<float>(kParams, 0.0f));
  net::InprocWorld world(kRanks, 5s);
  spawn(world, [&](Transport& t) {
    const auto me = static_cast<std::size_t>(t.rank());
    auto comp = make_compressor(spec);
    std::vector<float>& w = weights[me];
    std::vector<float> g(kParams);
    for (int step = 0; step < steps; ++step) {
      loss_and_grad(w, me * kPerRank, kPerRank, &g);
      comp->allreduce(t, g, layout);
      for (std::size_t i = 0; i < kParams; ++i) w[i] -= kLr * g[i] / kRanks;
    }
  });
  REQUIRE(bitwise_equal(weights[0], weights[1]));
  return loss_and_grad(weights[0], 0, kPerRank * kRanks, nullptr);
}

}  // namespace

TEST_CASE("SGD with each compressor converges to within a stated factor of uncompressed", "[compression]") {
  // After 80 steps uncompressed SGD is within 7% of the noise floor (0.5 · 8 outputs · E[(0.1·U(-1,1))²]
  // ≈ 0.0133 on the generated noise, 0.0112 fitted); the initial loss is ≈ 50. Measured factors
  // (80 steps): fp16, bf16, int8 1.0000; topk:0.1 0.97; topk:0.03 2.18; powersgd:1 0.97; powersgd:2 0.99.
  const double reference = train_least_squares("none", 80);
  CHECK(reference < 0.0125);
  struct Case {
    const char* spec;
    double factor;
  };
  for (const Case c : {Case{"fp16", 1.01}, Case{"bf16", 1.01}, Case{"int8", 1.01}, Case{"topk:0.1", 1.2},
                       Case{"topk:0.03", 3.0}, Case{"powersgd:1", 1.2}, Case{"powersgd:2", 1.2}}) {
    const double loss = train_least_squares(c.spec, 80);
    CAPTURE(c.spec, loss, reference);
    CHECK(loss <= c.factor * reference);
  }
}
