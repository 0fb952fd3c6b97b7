// Owns the CPU kernel tests: matmul against a naive loop, thread-count and batch-split determinism, fast exp/tanh, input errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <memory>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/ordered_products.h"
#include "runtime/cpu/vec_math.h"
#include "tests/reference_ops.h"

using namespace troupe;
using ref::Vec;

namespace {

Tensor random_tensor(std::mt19937_64& rng, const Shape& shape, double lo = -1.0, double hi = 1.0) {
  return ref::to_tensor(shape, ref::random_vec(rng, static_cast<std::size_t>(shape_numel(shape)), lo, hi));
}

Tensor random_ids(std::mt19937_64& rng, std::int64_t n, int hi) {
  return Tensor::from_i32({n}, ref::random_ids(rng, static_cast<std::size_t>(n), hi));
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// Runs `op` on a 1-thread and a 2-thread backend; every tensor it returns must match bit for bit.
void same_on_1_and_2_threads(const std::string& what, const std::function<std::vector<Tensor>(Backend&)>& op) {
  CpuBackend one(1), two(2);
  REQUIRE(two.threads() == 2);
  const std::vector<Tensor> a = op(one), b = op(two);
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    INFO(what << ": output " << i << " " << shape_str(a[i].shape()));
    CHECK(bitwise_equal(a[i], b[i]));
  }
}

}  // namespace

// ---------------------------------------------------------------- matmul

TEST_CASE("matmul matches a naive double loop for every transpose combination", "[kernels]") {
  struct Mnk {
    std::int64_t m, n, k;
  };
  // The last five are big enough (m*n*k >= 2^17) for CpuBackend::gemm to cut them into several BLAS
  // calls run on the pool: by rows (m > 128) or by columns (n > 512).
  const std::vector<Mnk> shapes = {{1, 1, 1},    {1, 7, 33},    {7, 1, 33},     {33, 7, 1},   {7, 33, 130},
                                   {130, 33, 7}, {33, 130, 7},  {130, 130, 33}, {5, 3, 0},    {7, 300, 130},
                                   {130, 70, 33}, {300, 40, 20}, {7, 600, 100},  {1, 1000, 200}, {260, 520, 8}};
  const int threads = GENERATE(1, 2, 3);
  CpuBackend be(threads);
  std::mt19937_64 rng(42);
  for (const Mnk& s : shapes)
    for (int combo = 0; combo < 8; ++combo) {
      const bool ta = combo & 1, tb = combo & 2;
      const float beta = (combo & 4) ? 0.5f : 0.0f;
      const Vec a = ref::random_vec(rng, s.m * s.k, -1.0, 1.0), b = ref::random_vec(rng, s.k * s.n, -1.0, 1.0);
      // c starts as garbage when beta = 0: it must be overwritten, not scaled.
      const Vec c0 = beta == 0.0f ? Vec(s.m * s.n, 12345.0) : ref::random_vec(rng, s.m * s.n, -1.0, 1.0);
      const Tensor at = ref::to_tensor(ta ? Shape{s.k, s.m} : Shape{s.m, s.k}, a);
      const Tensor bt = ref::to_tensor(tb ? Shape{s.n, s.k} : Shape{s.k, s.n}, b);
      Tensor c = ref::to_tensor({s.m, s.n}, c0);
      const float alpha = 0.75f;
      be.matmul(at, ta, bt, tb, c, alpha, beta);
      // The same product with |a| and |b|: the scale of each dot product, for an error bound.
      Vec abs_a(a), abs_b(b);
      for (auto& v : abs_a) v = std::abs(v);
      for (auto& v : abs_b) v = std::abs(v);
      const Vec want = ref::matmul(a, ta, b, tb, s.m, s.n, s.k);
      const Vec scale = ref::matmul(abs_a, ta, abs_b, tb, s.m, s.n, s.k);
      const Vec got = ref::to_vec(c);
      double worst = 0.0;
      for (std::int64_t i = 0; i < s.m * s.n; ++i) {
        const double w = alpha * want[i] + beta * c0[i];
        const double bound = 1e-6 + 1e-5 * (alpha * scale[i] + std::abs(beta * c0[i]));
        worst = std::max(worst, std::abs(got[i] - w) / bound);
      }
      INFO("threads " << threads << ", m n k = " << s.m << " " << s.n << " " << s.k << ", trans_a " << ta
                      << ", trans_b " << tb << ", beta " << beta << ": worst error / bound " << worst);
      CHECK(worst <= 1.0);
    }
}

TEST_CASE("ordered products: a tile of outputs has each output's bits computed alone", "[kernels]") {
  // Deterministic tensor parallelism relies on this: a shard computes a slice of a product's outputs
  // (other tiles, other tails) and must get the single device's bits for each.
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (std::int64_t k : {1, 7, 8, 13, 64, 67}) {
    std::vector<float> a(static_cast<std::size_t>(5 * k)), b(static_cast<std::size_t>(5 * k));
    for (float& v : a) v = u(rng);
    for (float& v : b) v = u(rng);
    float tile[16];
    cpu::ordered_dot_tile<4, 4>(a.data(), k, b.data(), k, k, tile);
    for (int r = 0; r < 4; ++r)
      for (int j = 0; j < 4; ++j) {
        const float alone = cpu::ordered_dot(a.data() + r * k, b.data() + j * k, k);
        REQUIRE(std::memcmp(&tile[r * 4 + j], &alone, sizeof alone) == 0);
      }
  }
  // [k, n] products: 4-row tiles and 16-column tiles against one row and one column at a time.
  const std::int64_t rows = 6, n = 35, k = 19;
  std::vector<float> a(static_cast<std::size_t>(rows * k)), b(static_cast<std::size_t>(k * n));
  for (float& v : a) v = u(rng);
  for (float& v : b) v = u(rng);
  std::vector<float> whole(static_cast<std::size_t>(rows * n)), alone(1);
  cpu::ordered_product_kn(0, rows, n, k, a.data(), k, 1, b.data(), n, whole.data(), n);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t j = 0; j < n; ++j) {
      cpu::ordered_product_kn(0, 1, 1, k, a.data() + r * k, k, 1, b.data() + j, n, alone.data(), 1);
      REQUIRE(std::memcmp(&whole[static_cast<std::size_t>(r * n + j)], alone.data(), sizeof(float)) == 0);
      double exact = 0.0;
      for (std::int64_t i = 0; i < k; ++i) exact += double(a[r * k + i]) * double(b[i * n + j]);
      REQUIRE(std::abs(whole[static_cast<std::size_t>(r * n + j)] - exact) < 1e-4);
    }
}

TEST_CASE("matmul rejects mismatched shapes", "[kernels]") {
  CpuBackend be(1);
  CHECK_THROWS_AS(be.matmul(Tensor::zeros({3, 4}), false, Tensor::zeros({5, 2}), false, Tensor::zeros({3, 2}), 1.0f, 0.0f),
                  InvariantError);
  CHECK_THROWS_AS(be.matmul(Tensor::zeros({3, 4}), false, Tensor::zeros({4, 2}), false, Tensor::zeros({2, 3}), 1.0f, 0.0f),
                  InvariantError);
}

// ---------------------------------------------------------------- thread-count independence

TEST_CASE("every op gives bitwise-identical results on 1 and 2 threads", "[kernels]") {
  // Sizes are chosen so that each op's parallel_for really splits on two threads.
  std::mt19937_64 rng(7);
  constexpr std::int64_t B = 4, T = 16, rows = B * T, in = 96, out = 160;

  SECTION("matmul") {
    for (int combo = 0; combo < 4; ++combo) {
      const bool ta = combo & 1, tb = combo & 2;
      for (auto [m, n, k] : std::vector<std::array<std::int64_t, 3>>{{130, 70, 33}, {7, 300, 130}, {300, 40, 20}, {7, 600, 100}}) {
        const Tensor a = random_tensor(rng, ta ? Shape{k, m} : Shape{m, k});
        const Tensor b = random_tensor(rng, tb ? Shape{n, k} : Shape{k, n});
        const Tensor c0 = random_tensor(rng, {m, n});
        same_on_1_and_2_threads("matmul trans_a " + std::to_string(ta) + " trans_b " + std::to_string(tb) + " m n k " +
                                    shape_str({m, n, k}), [&](Backend& be) {
          Tensor c = c0.clone();
          be.matmul(a, ta, b, tb, c, 0.5f, 0.25f);
          return std::vector<Tensor>{c};
        });
      }
    }
  }
  SECTION("linear forward and backward") {
    // [B, T, in] -> out: a round shape, and an odd one (rows 66 = 6 samples of 11).
    for (auto [b, t, n_in, n_out] : std::vector<std::array<std::int64_t, 4>>{{B, T, in, out}, {6, 11, 100, 200}}) {
      const std::int64_t n = b * t;
      const Tensor x = random_tensor(rng, {n, n_in}), w = random_tensor(rng, {n_out, n_in}), bias = random_tensor(rng, {n_out});
      const Tensor dy = random_tensor(rng, {n, n_out}), dw0 = random_tensor(rng, {n_out, n_in}), db0 = random_tensor(rng, {n_out});
      for (bool det : {false, true})
        same_on_1_and_2_threads(std::string(det ? "linear (deterministic) " : "linear ") + shape_str({n, n_in, n_out}),
                                [&, t = t, n = n, n_in = n_in, n_out = n_out](Backend& be) {
          be.set_deterministic(det);
          Tensor y = Tensor::empty({n, n_out}), y_nobias = Tensor::empty({n, n_out});
          be.linear_forward(x, w, bias, y);
          be.linear_forward(x, w, Tensor(), y_nobias);
          Tensor dx = Tensor::empty({n, n_in}), dw = dw0.clone(), db = db0.clone();
          be.linear_backward(dy, x, w, dx, dw, db, t);
          be.flush_exact_grad(dw);  // no-op outside deterministic mode: nothing was added to its exact sum
          be.flush_exact_grad(db);
          return std::vector<Tensor>{y, y_nobias, dx, dw, db};
        });
    }
  }
  SECTION("elementwise: gelu, relu, add") {
    const Tensor x = random_tensor(rng, {40000}, -4.0, 4.0), dy = random_tensor(rng, {40000});
    same_on_1_and_2_threads("elementwise", [&](Backend& be) {
      Tensor g = Tensor::empty({40000}), dg = Tensor::empty({40000}), r = Tensor::empty({40000}), dr = Tensor::empty({40000});
      be.gelu_forward(x, g);
      be.gelu_backward(x, dy, dg);
      be.relu_forward(x, r);
      be.relu_backward(r, dy, dr);
      Tensor s = Tensor::empty({40000}), acc = x.clone();
      be.add(x, dy, s);
      be.add_inplace(acc, dy);
      return std::vector<Tensor>{g, dg, r, dr, s, acc};
    });
  }
  SECTION("softmax and layernorm") {
    const Tensor x = random_tensor(rng, {rows, in}, -3.0, 3.0), dy = random_tensor(rng, {rows, in});
    const Tensor w = random_tensor(rng, {in}, 0.5, 1.5), b = random_tensor(rng, {in});
    const Tensor dw0 = random_tensor(rng, {in}), db0 = random_tensor(rng, {in});
    same_on_1_and_2_threads("softmax/layernorm", [&](Backend& be) {
      Tensor y = Tensor::empty({rows, in}), dx = Tensor::empty({rows, in});
      be.softmax_forward(x, y);
      be.softmax_backward(y, dy, dx);
      Tensor ln = Tensor::empty({rows, in}), mean = Tensor::empty({rows}), rstd = Tensor::empty({rows});
      be.layernorm_forward(x, w, b, 1e-5f, ln, mean, rstd);
      Tensor dln = Tensor::empty({rows, in}), dw = dw0.clone(), db = db0.clone();
      be.layernorm_backward(dy, x, w, mean, rstd, dln, dw, db);
      return std::vector<Tensor>{y, dx, ln, mean, rstd, dln, dw, db};
    });
  }
  SECTION("embedding") {
    const Tensor ids = random_ids(rng, rows, 50), table = random_tensor(rng, {50, in}), dy = random_tensor(rng, {rows, in});
    const Tensor dt0 = random_tensor(rng, {50, in});
    same_on_1_and_2_threads("embedding", [&](Backend& be) {
      Tensor y = Tensor::empty({rows, in}), dt = dt0.clone();
      be.embedding_forward(ids, table, y);
      be.embedding_backward(ids, dy, dt);
      return std::vector<Tensor>{y, dt};
    });
  }
  SECTION("attention") {
    constexpr std::int64_t C = 64;
    constexpr int H = 4;
    const Tensor qkv = random_tensor(rng, {B, T, 3 * C}, -2.0, 2.0), dout = random_tensor(rng, {B, T, C});
    same_on_1_and_2_threads("attention", [&](Backend& be) {
      Tensor o = Tensor::empty({B, T, C}), p = Tensor::empty({B, H, T, T}), dqkv = Tensor::empty({B, T, 3 * C});
      be.attention_forward(qkv, H, o, p);
      be.attention_backward(dout, qkv, p, H, dqkv);
      return std::vector<Tensor>{o, p, dqkv};
    });
  }
  SECTION("cross-entropy") {
    const Tensor logits = random_tensor(rng, {rows, 100}, -4.0, 4.0), targets = random_ids(rng, rows, 100);
    same_on_1_and_2_threads("cross-entropy", [&](Backend& be) {
      Tensor p = Tensor::empty({rows, 100}), l = Tensor::empty({rows}), d = Tensor::empty({rows, 100});
      const double total = be.cross_entropy_forward(logits, targets, p, l);
      be.cross_entropy_backward(p, targets, 1.0f / rows, d);
      return std::vector<Tensor>{p, l, d, Tensor::from_f32({1}, std::vector<float>{static_cast<float>(total)})};
    });
  }
}

// ---------------------------------------------------------------- batch-split independence

// What pipelines and data parallelism rely on: the gradient of a batch is the same bits whether the
// batch goes through backward whole, as micro-batches (whole samples) one after another, or split over
// replicas whose exact sums are added afterwards in any order.
TEST_CASE("deterministic linear_backward: whole batch == micro-batches == replicas, bitwise", "[kernels]") {
  constexpr std::int64_t B = 4, T = 16, in = 96, out = 160;
  const int threads = GENERATE(1, 2);
  std::mt19937_64 rng(11);
  const Tensor x = random_tensor(rng, {B, T, in}), dy = random_tensor(rng, {B, T, out}), w = random_tensor(rng, {out, in});
  const Tensor dw0 = random_tensor(rng, {out, in}), db0 = random_tensor(rng, {out});
  CpuBackend be(threads);
  be.set_deterministic(true);
  REQUIRE(be.deterministic());

  Tensor dw_whole = dw0.clone(), db_whole = db0.clone();
  be.linear_backward(dy, x, w, Tensor::empty({B, T, in}), dw_whole, db_whole, T);
  be.flush_exact_grad(dw_whole);
  be.flush_exact_grad(db_whole);

  // Splits into micro-batches of whole samples: halves, single samples, uneven.
  for (const std::vector<std::int64_t>& cuts : std::vector<std::vector<std::int64_t>>{{0, 2, 4}, {0, 1, 2, 3, 4}, {0, 1, 4}, {0, 3, 4}}) {
    Tensor dw = dw0.clone(), db = db0.clone();
    for (std::size_t i = 0; i + 1 < cuts.size(); ++i) {
      const Tensor xs = x.slice(cuts[i], cuts[i + 1]), dys = dy.slice(cuts[i], cuts[i + 1]);
      be.linear_backward(dys, xs, w, Tensor::empty({cuts[i + 1] - cuts[i], T, in}), dw, db, T);
    }
    be.flush_exact_grad(dw);
    be.flush_exact_grad(db);
    INFO("threads " << threads << ", " << cuts.size() - 1 << " micro-batches");
    CHECK(bitwise_equal(dw, dw_whole));
    CHECK(bitwise_equal(db, db_whole));
  }

  // Replicas: each sample on its own backend, exact sums added in reverse order, flushed on one of them.
  {
    std::vector<std::unique_ptr<CpuBackend>> replicas;
    std::vector<Tensor> dws, dbs;
    for (std::int64_t s = 0; s < B; ++s) {
      replicas.push_back(std::make_unique<CpuBackend>(threads));
      replicas.back()->set_deterministic(true);
      dws.push_back(Tensor::zeros({out, in}));
      dbs.push_back(Tensor::zeros({out}));
      replicas.back()->linear_backward(dy.slice(s, s + 1), x.slice(s, s + 1), w, Tensor(), dws.back(), dbs.back(), T);
    }
    for (std::int64_t s = B - 1; s-- > 0;) {
      auto wa = replicas[s]->exact_grad(dws[s]), wb = replicas[s + 1]->exact_grad(dws[s + 1]);
      auto ba = replicas[s]->exact_grad(dbs[s]), bb = replicas[s + 1]->exact_grad(dbs[s + 1]);
      for (std::size_t i = 0; i < wa.size(); ++i) wa[i] = exact_add(wb[i], wa[i]);
      for (std::size_t i = 0; i < ba.size(); ++i) ba[i] = exact_add(bb[i], ba[i]);
    }
    // Deterministic kernels leave the float gradient alone until it is flushed.
    CHECK(std::all_of(dws[0].f32(), dws[0].f32() + dws[0].numel(), [](float v) { return v == 0.0f; }));
    Tensor dw = dw0.clone(), db = db0.clone();
    auto acc0 = replicas[0]->exact_grad(dws[0]);
    std::copy(acc0.begin(), acc0.end(), be.exact_grad(dw).begin());
    auto bacc0 = replicas[0]->exact_grad(dbs[0]);
    std::copy(bacc0.begin(), bacc0.end(), be.exact_grad(db).begin());
    be.flush_exact_grad(dw);
    be.flush_exact_grad(db);
    CHECK(bitwise_equal(dw, dw_whole));
    CHECK(bitwise_equal(db, db_whole));
  }

  // Sanity: the deterministic result is the right gradient (close to the unordered one).
  CpuBackend fast(threads);
  Tensor dw_fast = dw0.clone(), db_fast = db0.clone();
  fast.linear_backward(dy, x, w, Tensor(), dw_fast, db_fast, T);
  CHECK(ref::rel_err(ref::to_vec(dw_whole), ref::to_vec(dw_fast)) <= 1e-5);
  CHECK(ref::rel_err(ref::to_vec(db_whole), ref::to_vec(db_fast)) <= 1e-5);
}

TEST_CASE("embedding and layernorm parameter gradients do not depend on the batch split", "[kernels]") {
  // Not only in deterministic mode: these reductions always run in row order.
  constexpr std::int64_t B = 4, T = 16, C = 96, V = 50;
  const int threads = GENERATE(1, 2);
  std::mt19937_64 rng(13);
  CpuBackend be(threads);
  REQUIRE_FALSE(be.deterministic());
  const Tensor ids = Tensor::from_i32({B, T}, ref::random_ids(rng, B * T, V));
  const Tensor x = random_tensor(rng, {B, T, C}, -2.0, 2.0), dy = random_tensor(rng, {B, T, C});
  const Tensor w = random_tensor(rng, {C}, 0.5, 1.5), b = random_tensor(rng, {C});
  const Tensor dt0 = random_tensor(rng, {V, C}), dw0 = random_tensor(rng, {C}), db0 = random_tensor(rng, {C});
  Tensor mean = Tensor::empty({B, T}), rstd = Tensor::empty({B, T}), y = Tensor::empty({B, T, C});
  be.layernorm_forward(x, w, b, 1e-5f, y, mean, rstd);

  Tensor dt_whole = dt0.clone(), dw_whole = dw0.clone(), db_whole = db0.clone(), dx_whole = Tensor::empty({B, T, C});
  be.embedding_backward(ids.view({B * T}), dy.view({B * T, C}), dt_whole);
  be.layernorm_backward(dy, x, w, mean, rstd, dx_whole, dw_whole, db_whole);

  for (const std::vector<std::int64_t>& cuts : std::vector<std::vector<std::int64_t>>{{0, 2, 4}, {0, 1, 2, 3, 4}, {0, 3, 4}}) {
    Tensor dt = dt0.clone(), dw = dw0.clone(), db = db0.clone(), dx = Tensor::empty({B, T, C});
    for (std::size_t i = 0; i + 1 < cuts.size(); ++i) {
      const std::int64_t s = cuts[i], e = cuts[i + 1], n = (e - s) * T;
      be.embedding_backward(ids.slice(s, e).view({n}), dy.slice(s, e).view({n, C}), dt);
      be.layernorm_backward(dy.slice(s, e), x.slice(s, e), w, mean.slice(s, e), rstd.slice(s, e), dx.slice(s, e), dw, db);
    }
    INFO("threads " << threads << ", " << cuts.size() - 1 << " micro-batches");
    CHECK(bitwise_equal(dt, dt_whole));
    CHECK(bitwise_equal(dw, dw_whole));
    CHECK(bitwise_equal(db, db_whole));
    CHECK(bitwise_equal(dx, dx_whole));
  }
}

// ---------------------------------------------------------------- vec_math

TEST_CASE("fast_exp is within 5e-7 relative of exp over -80..80", "[kernels]") {
  double worst = 0.0;
  float worst_x = 0.0f;
  constexpr int kSteps = 1 << 21;
  for (int i = 0; i <= kSteps; ++i) {
    // An irrational-ish step so the sweep does not sit on multiples of ln 2.
    const float x = static_cast<float>(-80.0 + 160.0 * i / kSteps + 1e-7 * (i % 7));
    const double want = std::exp(static_cast<double>(x));
    const double err = std::abs(cpu::fast_exp(x) - want) / want;
    if (err > worst) worst = err, worst_x = x;
  }
  INFO("worst relative error " << worst << " at x = " << worst_x);
  CHECK(worst <= 5e-7);
  CHECK(cpu::fast_exp(0.0f) == 1.0f);
  // Clamped far outside: finite and normal, never inf or 0.
  CHECK(std::isnormal(cpu::fast_exp(-1000.0f)));
  CHECK(std::isfinite(cpu::fast_exp(1000.0f)));
  CHECK(std::isnormal(cpu::fast_exp(1000.0f)));
}

TEST_CASE("fast_tanh is within 1e-6 absolute of tanh and saturates at +-1", "[kernels]") {
  double worst = 0.0;
  float worst_x = 0.0f;
  constexpr int kSteps = 1 << 20;
  for (int i = 0; i <= kSteps; ++i) {
    const float x = static_cast<float>(-20.0 + 40.0 * i / kSteps + 1e-7 * (i % 5));
    const double err = std::abs(cpu::fast_tanh(x) - std::tanh(static_cast<double>(x)));
    if (err > worst) worst = err, worst_x = x;
  }
  // Small arguments, where 1 - 2/(e^2u + 1) cancels.
  for (float x = -1e-3f; x <= 1e-3f; x += 1e-6f) {
    const double err = std::abs(cpu::fast_tanh(x) - std::tanh(static_cast<double>(x)));
    if (err > worst) worst = err, worst_x = x;
  }
  INFO("worst absolute error " << worst << " at x = " << worst_x);
  CHECK(worst <= 1e-6);
  CHECK(cpu::fast_tanh(100.0f) == 1.0f);
  CHECK(cpu::fast_tanh(-100.0f) == -1.0f);
  CHECK(cpu::fast_tanh(1e6f) == 1.0f);
  CHECK(cpu::fast_tanh(-1e6f) == -1.0f);
}

// ---------------------------------------------------------------- input errors

TEST_CASE("cross_entropy with an out-of-range target throws troupe::Error", "[kernels]") {
  CpuBackend be(2);
  constexpr std::int64_t n = 4, v = 5;
  std::mt19937_64 rng(17);
  const Tensor logits = random_tensor(rng, {n, v});
  for (std::int32_t bad : {5, 105, -1}) {  // v, far above, below
    const Tensor targets = Tensor::from_i32({n}, std::vector<std::int32_t>{0, 4, bad, 2});
    Tensor probs = Tensor::empty({n, v}), losses = Tensor::empty({n});
    INFO("target " << bad);
    try {
      be.cross_entropy_forward(logits, targets, probs, losses);
      FAIL("no error for target " << bad);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kInput);
      CHECK_THAT(e.what(), Catch::Contains(std::to_string(bad)));
    }
  }
  // In range at both ends is fine.
  Tensor probs = Tensor::empty({n, v}), losses = Tensor::empty({n});
  CHECK_NOTHROW(be.cross_entropy_forward(logits, Tensor::from_i32({n}, std::vector<std::int32_t>{0, 4, 4, 0}), probs, losses));
}

TEST_CASE("embedding with an out-of-range token id throws troupe::Error", "[kernels]") {
  CpuBackend be(1);
  const Tensor table = Tensor::zeros({5, 3});
  Tensor y = Tensor::empty({2, 3});
  CHECK_THROWS_AS(be.embedding_forward(Tensor::from_i32({2}, std::vector<std::int32_t>{1, 5}), table, y), Error);
  CHECK_THROWS_AS(be.embedding_forward(Tensor::from_i32({2}, std::vector<std::int32_t>{-1, 0}), table, y), Error);
}
