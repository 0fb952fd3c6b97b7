// Owns the residual CNN's tests: conv2d, batch norm and pooling against double finite differences, the CNN
// layers, running statistics, reproducibility across thread counts, pipelines and data parallelism (per-replica
// and synchronised batch norm) against one device, weight files and config validation.
//
// Tolerances and conventions as tests/test_gradcheck.cpp: relative errors max|got - want| / max(max|want|,
// 1e-3); gradients <= 1e-3, forwards <= 1e-5; the scalar differentiated is sum(out * R) for a random R.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <thread>

#include "actors/session.h"
#include "models/cnn_layers.h"
#include "models/trainer.h"
#include "net/inproc/inproc_transport.h"
#include "runtime/comm/transport_replica_sum.h"
#include "runtime/config/config_loader.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/io/safetensors.h"
#include "tests/error_of.h"
#include "tests/gradient_check.h"
#include "tests/reference_cnn_ops.h"
#include "tests/temp_dir.h"
#include "tests/training_runs.h"
#include "tests/troupe_command.h"

using namespace troupe;
using Catch::Matchers::Contains;
using ref::Vec;
using ref::check_accumulated;
using ref::check_forward;
using ref::check_grad;
using ref::max_abs;

namespace {

Tensor nan_tensor(const Shape& shape) { return Tensor::full(shape, std::numeric_limits<float>::quiet_NaN()); }

void set_value(Param* p, const Vec& v) { p->value.copy_from(ref::to_tensor(p->value.shape(), v)); }

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.numel() == b.numel() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// A small CNN run: stages of 4 and 8 channels, one block each, batch 8.
const std::vector<std::string> kTinyCnn = {"model.kind=cnn", "model.cnn_channels=4,8", "model.cnn_blocks=1,1",
                                           "train.batch_size=8", "optim.kind=adamw", "optim.lr=0.01",
                                           "train.threads=1"};

bool have_fashion_mnist() {
  return std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
}

}  // namespace

// ---------------------------------------------------------------- backend ops

TEST_CASE("conv2d: forward and backward against the reference (3x3 and 1x1, strides, padding)", "[gradcheck][cnn]") {
  struct Case {
    std::int64_t k, stride, pad;
  };
  const Case cs = GENERATE(Case{3, 1, 1}, Case{3, 2, 1}, Case{1, 2, 0}, Case{1, 1, 0}, Case{3, 1, 0});
  const bool with_bias = GENERATE(false, true);
  const bool deterministic = GENERATE(false, true);
  INFO("kernel " << cs.k << " stride " << cs.stride << " pad " << cs.pad << ", bias " << with_bias
                 << ", deterministic " << deterministic);
  // 5 samples: more than one group of the fixed dw reduction (4 samples); odd sides for stride 2.
  const ref::ConvGeom g{5, 2, 5, 5, 3, cs.k, cs.stride, cs.pad};
  std::mt19937_64 rng(1201);
  Vec x = ref::random_vec(rng, g.n * g.c * g.h * g.w, -1.5, 1.5);
  Vec w = ref::random_vec(rng, g.o * g.c * g.k * g.k, -0.5, 0.5);
  Vec b = with_bias ? ref::random_vec(rng, g.o, -0.5, 0.5) : Vec();
  const Shape yshape{g.n, g.o, g.ho(), g.wo()};
  const Vec r = ref::random_vec(rng, shape_numel(yshape), -1.0, 1.0);
  auto f = [&] { return ref::dot(ref::conv2d(x, w, b, g), r); };

  CpuBackend be(2);
  be.set_deterministic(deterministic);
  const Tensor xt = ref::to_tensor({g.n, g.c, g.h, g.w}, x), wt = ref::to_tensor({g.o, g.c, g.k, g.k}, w);
  const Tensor bt = with_bias ? ref::to_tensor({g.o}, b) : Tensor(), rt = ref::to_tensor(yshape, r);
  Tensor y = nan_tensor(yshape);
  be.conv2d_forward(xt, wt, bt, y, static_cast<int>(g.stride), static_cast<int>(g.pad));
  check_forward("conv2d y", y, ref::conv2d(x, w, b, g));

  Tensor dx = nan_tensor(xt.shape());  // overwritten
  Tensor dw = Tensor::zeros(wt.shape());
  Tensor db = with_bias ? Tensor::zeros({g.o}) : Tensor();
  auto flush = [&] {
    if (!deterministic) return;
    be.flush_exact_grad(dw);
    if (with_bias) be.flush_exact_grad(db);
  };
  be.conv2d_backward(rt, xt, wt, dx, dw, db, static_cast<int>(g.stride), static_cast<int>(g.pad));
  flush();
  check_grad("conv2d dx", dx, ref::numeric_grad(f, x));
  check_grad("conv2d dw", dw, ref::numeric_grad(f, w));
  if (with_bias) check_grad("conv2d db", db, ref::numeric_grad(f, b));

  const Vec dw_once = ref::to_vec(dw), db_once = with_bias ? ref::to_vec(db) : Vec();
  be.conv2d_backward(rt, xt, wt, Tensor(), dw, db, static_cast<int>(g.stride), static_cast<int>(g.pad));
  flush();
  check_accumulated("conv2d dw", dw, dw_once);
  if (with_bias) check_accumulated("conv2d db", db, db_once);
}

TEST_CASE("conv2d: results are bitwise the same for 1, 2 and 3 threads", "[cnn][determinism]") {
  const ref::ConvGeom g{9, 3, 12, 12, 5, 3, 2, 1};
  std::mt19937_64 rng(1202);
  const Tensor x = ref::to_tensor({g.n, g.c, g.h, g.w}, ref::random_vec(rng, g.n * g.c * g.h * g.w, -1, 1));
  const Tensor w = ref::to_tensor({g.o, g.c, 3, 3}, ref::random_vec(rng, g.o * g.c * 9, -1, 1));
  const Tensor dy = ref::to_tensor({g.n, g.o, g.ho(), g.wo()}, ref::random_vec(rng, g.n * g.o * g.ho() * g.wo(), -1, 1));
  std::vector<Tensor> ys, dxs, dws;
  for (int threads : {1, 2, 3}) {
    CpuBackend be(threads);
    Tensor y = Tensor::empty(dy.shape()), dx = Tensor::empty(x.shape()), dw = Tensor::zeros(w.shape());
    be.conv2d_forward(x, w, Tensor(), y, 2, 1);
    be.conv2d_backward(dy, x, w, dx, dw, Tensor(), 2, 1);
    ys.push_back(y), dxs.push_back(dx), dws.push_back(dw);
  }
  for (std::size_t i = 1; i < ys.size(); ++i) {
    CHECK(same_bits(ys[0], ys[i]));
    CHECK(same_bits(dxs[0], dxs[i]));
    CHECK(same_bits(dws[0], dws[i]));
  }
}

TEST_CASE("conv2d: the packed path over groups of samples equals the per-sample products", "[cnn]") {
  if (!cpu_has_avx512f()) {
    WARN("no AVX-512F: the packed convolution is not used on this CPU");
    return;
  }
  // Layers of the benchmark's network, with batches that leave a part-filled last group of samples (a
  // group holds 2 samples of the first shape), and the data gradient's padding k - 1 - pad = 0 and 1.
  const ref::ConvGeom g = GENERATE(ref::ConvGeom{7, 16, 14, 14, 16, 3, 1, 1}, ref::ConvGeom{9, 16, 14, 14, 32, 3, 2, 1},
                                   ref::ConvGeom{5, 32, 7, 7, 32, 3, 1, 1}, ref::ConvGeom{6, 16, 14, 14, 32, 1, 2, 0},
                                   ref::ConvGeom{3, 24, 6, 6, 40, 1, 1, 0}, ref::ConvGeom{4, 1, 28, 28, 16, 3, 2, 1},
                                   ref::ConvGeom{3, 5, 9, 9, 6, 3, 1, 0});
  INFO("n " << g.n << " c " << g.c << " side " << g.h << " o " << g.o << " k " << g.k << " stride " << g.stride
            << " pad " << g.pad);
  std::mt19937_64 rng(1203);
  const Tensor x = ref::to_tensor({g.n, g.c, g.h, g.w}, ref::random_vec(rng, g.n * g.c * g.h * g.w, -1, 1));
  const Tensor w = ref::to_tensor({g.o, g.c, g.k, g.k}, ref::random_vec(rng, g.o * g.c * g.k * g.k, -1, 1));
  const Tensor b = ref::to_tensor({g.o}, ref::random_vec(rng, g.o, -1, 1));
  const Shape yshape{g.n, g.o, g.ho(), g.wo()};
  const Tensor dy = ref::to_tensor(yshape, ref::random_vec(rng, shape_numel(yshape), -1, 1));
  struct Out {
    Tensor y, dx, dw, db;
  };
  auto run = [&](F32Kernel kernel, int threads) {
    CpuBackend be(threads);
    be.set_f32_kernel(kernel);
    Out o{nan_tensor(yshape), nan_tensor(x.shape()), Tensor::full(w.shape(), 0.25f), Tensor::zeros({g.o})};
    be.conv2d_forward(x, w, b, o.y, static_cast<int>(g.stride), static_cast<int>(g.pad));
    be.conv2d_backward(dy, x, w, o.dx, o.dw, o.db, static_cast<int>(g.stride), static_cast<int>(g.pad));
    return o;
  };
  const Out per_sample = run(F32Kernel::blas, 1), packed = run(F32Kernel::packed, 1), packed3 = run(F32Kernel::packed, 3);
  check_forward("y", packed.y, ref::to_vec(per_sample.y));
  check_forward("dx", packed.dx, ref::to_vec(per_sample.dx));
  check_forward("dw (accumulated onto 0.25)", packed.dw, ref::to_vec(per_sample.dw));
  check_forward("db", packed.db, ref::to_vec(per_sample.db));
  CHECK(same_bits(packed.y, packed3.y));
  CHECK(same_bits(packed.dx, packed3.dx));
  CHECK(same_bits(packed.dw, packed3.dw));
}

TEST_CASE("batchnorm: training forward, running statistics, backward and eval forward against the reference",
          "[gradcheck][cnn]") {
  const bool deterministic = GENERATE(false, true);
  INFO("deterministic " << deterministic);
  constexpr std::int64_t n = 3, c = 4, s = 6;
  std::mt19937_64 rng(1301);
  Vec x = ref::random_vec(rng, n * c * s, -2.0, 3.0);
  Vec gamma = ref::random_vec(rng, c, 0.5, 1.5), beta = ref::random_vec(rng, c, -0.5, 0.5);
  const Vec rm0 = ref::random_vec(rng, c, -0.2, 0.2), rv0 = ref::random_vec(rng, c, 0.5, 2.0);
  const Vec r = ref::random_vec(rng, n * c * s, -1.0, 1.0);
  auto f = [&] { return ref::dot(ref::batchnorm_train(x, gamma, beta, n, c, s).y, r); };

  CpuBackend be(2);
  be.set_deterministic(deterministic);
  const Tensor xt = ref::to_tensor({n, c, s}, x), gt = ref::to_tensor({c}, gamma), bt = ref::to_tensor({c}, beta);
  const Tensor rm = ref::to_tensor({c}, rm0), rv = ref::to_tensor({c}, rv0);
  Tensor y = nan_tensor({n, c, s}), mean = nan_tensor({c}), rstd = nan_tensor({c});
  be.batchnorm_forward(xt, gt, bt, rm, rv, true, 0.1f, 1e-5f, y, mean, rstd, nullptr);
  const ref::BnOut want = ref::batchnorm_train(x, gamma, beta, n, c, s);
  check_forward("batchnorm y", y, want.y);
  check_forward("batchnorm mean", mean, want.mean);
  // torch.nn.BatchNorm2d: running = 0.9 running + 0.1 batch, with the unbiased variance.
  Vec rm_want(c), rv_want(c), rstd_want(c);
  for (std::int64_t ch = 0; ch < c; ++ch) {
    rm_want[ch] = 0.9 * rm0[ch] + 0.1 * want.mean[ch];
    rv_want[ch] = 0.9 * rv0[ch] + 0.1 * want.var[ch] * (n * s) / (n * s - 1.0);
    rstd_want[ch] = 1.0 / std::sqrt(want.var[ch] + 1e-5);
  }
  check_forward("batchnorm rstd", rstd, rstd_want);
  check_forward("running_mean", rm, rm_want);
  check_forward("running_var", rv, rv_want);

  Tensor dx = nan_tensor({n, c, s}), dg = Tensor::zeros({c}), db = Tensor::zeros({c});
  auto flush = [&] {
    if (!deterministic) return;
    be.flush_exact_grad(dg);
    be.flush_exact_grad(db);
  };
  const Tensor rt = ref::to_tensor({n, c, s}, r);
  be.batchnorm_backward(rt, xt, gt, mean, rstd, dx, dg, db, nullptr);
  flush();
  check_grad("batchnorm dx", dx, ref::numeric_grad(f, x));
  check_grad("batchnorm dgamma", dg, ref::numeric_grad(f, gamma));
  check_grad("batchnorm dbeta", db, ref::numeric_grad(f, beta));
  const Vec dg_once = ref::to_vec(dg), db_once = ref::to_vec(db);
  be.batchnorm_backward(rt, xt, gt, mean, rstd, dx, dg, db, nullptr);
  flush();
  check_accumulated("batchnorm dgamma", dg, dg_once);
  check_accumulated("batchnorm dbeta", db, db_once);

  SECTION("eval mode normalises by the running statistics and leaves them alone") {
    Tensor ye = nan_tensor({n, c, s});
    const Vec rm1 = ref::to_vec(rm), rv1 = ref::to_vec(rv);
    be.batchnorm_forward(xt, gt, bt, rm, rv, false, 0.1f, 1e-5f, ye, Tensor(), Tensor(), nullptr);
    check_forward("batchnorm eval y", ye, ref::batchnorm_eval(x, gamma, beta, rm1, rv1, n, c, s));
    CHECK(ref::to_vec(rm) == rm1);
    CHECK(ref::to_vec(rv) == rv1);
  }
}

TEST_CASE("batchnorm over replicas: shares summed through a ReplicaSum are the whole batch, bitwise",
          "[cnn][data_parallel]") {
  // Samples 0..2 on replica 0, 3..6 on replica 1 (unequal shares: the count travels with the sums).
  constexpr std::int64_t n = 7, c = 3, s = 10, first = 3;
  std::mt19937_64 rng(77);
  const Tensor x = ref::to_tensor({n, c, s}, ref::random_vec(rng, n * c * s, -2.0, 3.0));
  const Tensor dy = ref::to_tensor({n, c, s}, ref::random_vec(rng, n * c * s, -1.0, 1.0));
  const Tensor gamma = ref::to_tensor({c}, ref::random_vec(rng, c, 0.5, 1.5));
  const Tensor beta = ref::to_tensor({c}, ref::random_vec(rng, c, -0.5, 0.5));
  struct Result {
    Tensor y, rm, rv, dx, dg, db;
  };
  // Forward (training) and backward of x's samples [begin, end), statistics summed over `replicas`.
  auto run = [&](std::int64_t begin, std::int64_t end, ReplicaSum* replicas) {
    CpuBackend be(2);
    be.set_deterministic(true);
    const Tensor xs = x.slice(begin, end);
    Result r{Tensor::zeros(xs.shape()), Tensor::zeros({c}), Tensor::full({c}, 1.0f), Tensor::zeros(xs.shape()),
             Tensor::zeros({c}), Tensor::zeros({c})};
    Tensor mean = Tensor::zeros({c}), rstd = Tensor::zeros({c});
    be.batchnorm_forward(xs, gamma, beta, r.rm, r.rv, true, 0.1f, 1e-5f, r.y, mean, rstd, replicas);
    be.batchnorm_backward(dy.slice(begin, end), xs, gamma, mean, rstd, r.dx, r.dg, r.db, replicas);
    be.flush_exact_grad(r.dg);
    be.flush_exact_grad(r.db);
    return r;
  };
  const Result whole = run(0, n, nullptr);
  net::InprocWorld world(2, std::chrono::seconds(30));
  comm::TransportReplicaSum sum0(world.transport(0)), sum1(world.transport(1));
  Result part[2];
  std::thread other([&] { part[1] = run(first, n, &sum1); });
  part[0] = run(0, first, &sum0);
  other.join();
  auto rows = [](const Tensor& t, std::int64_t begin, std::int64_t end) { return t.slice(begin, end); };
  CHECK(same_bits(part[0].y, rows(whole.y, 0, first)));
  CHECK(same_bits(part[1].y, rows(whole.y, first, n)));
  CHECK(same_bits(part[0].dx, rows(whole.dx, 0, first)));
  CHECK(same_bits(part[1].dx, rows(whole.dx, first, n)));
  for (const Result& p : part) {  // running statistics: the whole batch's on every replica
    CHECK(same_bits(p.rm, whole.rm));
    CHECK(same_bits(p.rv, whole.rv));
  }
  // Parameter gradients stay per share; their sum (what data parallelism adds) is the whole batch's.
  CHECK_FALSE(same_bits(part[0].dg, whole.dg));
  for (std::int64_t ch = 0; ch < c; ++ch) {
    CHECK(part[0].dg.f32()[ch] + part[1].dg.f32()[ch] == Approx(whole.dg.f32()[ch]).epsilon(1e-5));
    CHECK(part[0].db.f32()[ch] + part[1].db.f32()[ch] == Approx(whole.db.f32()[ch]).epsilon(1e-5));
  }
  SECTION("without the sum each share normalises by its own statistics") {
    const Result alone = run(0, first, nullptr);
    CHECK_FALSE(same_bits(alone.y, part[0].y));
  }
}

TEST_CASE("avgpool: forward and backward against the reference", "[gradcheck][cnn]") {
  constexpr std::int64_t n = 3, c = 5, s = 7;
  std::mt19937_64 rng(1401);
  Vec x = ref::random_vec(rng, n * c * s, -2.0, 2.0);
  const Vec r = ref::random_vec(rng, n * c, -1.0, 1.0);
  auto f = [&] { return ref::dot(ref::avgpool(x, n, c, s), r); };
  CpuBackend be(2);
  Tensor y = nan_tensor({n, c});
  be.avgpool_forward(ref::to_tensor({n, c, s}, x), y);
  check_forward("avgpool y", y, ref::avgpool(x, n, c, s));
  Tensor dx = nan_tensor({n, c, s});
  be.avgpool_backward(ref::to_tensor({n, c}, r), dx);
  check_grad("avgpool dx", dx, ref::numeric_grad(f, x));
}

// ---------------------------------------------------------------- layers

TEST_CASE("ResidualBlock backward matches finite differences, identity and projection shortcuts", "[gradcheck][cnn]") {
  struct Case {
    int in, out, stride;
  };
  const Case cs = GENERATE(Case{3, 3, 1}, Case{2, 4, 2}, Case{3, 4, 1});
  INFO("in " << cs.in << " out " << cs.out << " stride " << cs.stride);
  constexpr std::int64_t n = 3, side = 5;
  const std::int64_t out_side = (side - 1) / cs.stride + 1;
  ParamSet ps;
  ResidualBlock block(ps, 2, cs.in, cs.out, cs.stride, side, 7);
  const bool projection = cs.stride != 1 || cs.in != cs.out;
  CHECK(block.name() == "blocks.2");
  REQUIRE(block.params().size() == (projection ? 9u : 6u));
  CHECK(ps.buffers().size() == (projection ? 6u : 4u));
  CHECK(ps.find("blocks.2.bn1.weight") != nullptr);
  CHECK(ps.find("blocks.2.bn1.running_mean") == nullptr);  // a buffer, not a parameter
  if (projection) CHECK(ps.find("blocks.2.shortcut.conv.weight")->value.shape() == Shape{cs.out, cs.in, 1, 1});

  std::mt19937_64 rng(1501);
  // params(): conv1, bn1 w/b, conv2, bn2 w/b, [shortcut conv, bn w/b]; gains around 1.
  std::vector<Vec> v;
  for (Param* p : block.params()) {
    const bool gain = p->name.find(".weight") != std::string::npos && p->value.ndim() == 1;
    v.push_back(gain ? ref::random_vec(rng, p->value.numel(), 0.5, 1.5)
                     : ref::random_vec(rng, p->value.numel(), -0.5, 0.5));
    set_value(p, v.back());
  }
  Vec x = ref::random_vec(rng, n * cs.in * side * side, -1.5, 1.5);
  const Vec r = ref::random_vec(rng, n * cs.out * out_side * out_side, -1.0, 1.0);
  auto forward_ref = [&] {
    const Vec none;
    return ref::residual_block(x, v[0], {v[1], v[2]}, v[3], {v[4], v[5]}, projection ? v[6] : none,
                               projection ? ref::BnParams{v[7], v[8]} : ref::BnParams{}, n, cs.in, cs.out, side,
                               cs.stride);
  };
  auto f = [&] { return ref::dot(forward_ref(), r); };

  CpuBackend be(2);
  MicroBatch mb;
  LayerCtx ctx;
  const Tensor xt = ref::to_tensor({n, cs.in, side, side}, x);
  const Tensor rt = ref::to_tensor({n, cs.out, out_side, out_side}, r);
  Tensor y = block.forward(be, mb, ctx, xt);
  REQUIRE(y.shape() == Shape{n, cs.out, out_side, out_side});
  check_forward("block output", y, forward_ref());
  Tensor dx = block.backward(be, mb, ctx, rt);
  check_grad("block dx", dx, ref::numeric_grad(f, x));
  std::vector<Vec> once;
  for (std::size_t i = 0; i < v.size(); ++i) {
    check_grad(block.params()[i]->name, block.params()[i]->grad, ref::numeric_grad(f, v[i]));
    once.push_back(ref::to_vec(block.params()[i]->grad));
  }
  SECTION("a second backward adds the same gradient again") {
    block.forward(be, mb, ctx, xt);
    block.backward(be, mb, ctx, rt);
    for (std::size_t i = 0; i < v.size(); ++i) check_accumulated(block.params()[i]->name, block.params()[i]->grad, once[i]);
  }
  SECTION("an evaluation forward uses the running statistics and saves nothing") {
    MicroBatch eval = mb;
    eval.training = false;
    LayerCtx ectx;
    const Vec rm = ref::to_vec(ps.buffers()[0]->value);
    block.forward(be, eval, ectx, xt);
    CHECK(ectx.saved.empty());
    CHECK(ref::to_vec(ps.buffers()[0]->value) == rm);
  }
}

TEST_CASE("CnnStem and CnnHead backward match finite differences", "[gradcheck][cnn]") {
  constexpr std::int64_t n = 2, side = 6, c = 3, classes = 4;
  std::mt19937_64 rng(1601);
  CpuBackend be(2);
  MicroBatch mb;

  SECTION("stem: conv 3x3 -> batch norm -> relu over rows of side x side pixels") {
    ParamSet ps;
    CnnStem stem(ps, CnnShape{{c}, {1}, classes, side}, 7);
    REQUIRE(stem.params().size() == 3);
    CHECK(stem.params()[0]->name == "stem.conv.weight");
    std::vector<Vec> v = {ref::random_vec(rng, c * 9, -0.5, 0.5), ref::random_vec(rng, c, 0.5, 1.5),
                          ref::random_vec(rng, c, -0.5, 0.5)};
    for (std::size_t i = 0; i < v.size(); ++i) set_value(stem.params()[i], v[i]);
    const Vec x = ref::random_vec(rng, n * side * side, 0.0, 1.0);
    const Vec r = ref::random_vec(rng, n * c * side * side, -1.0, 1.0);
    auto f = [&] { return ref::dot(ref::relu(ref::conv_bn(x, v[0], {v[1], v[2]}, n, 1, c, side, 3, 1)), r); };
    LayerCtx ctx;
    Tensor y = stem.forward(be, mb, ctx, ref::to_tensor({n, side * side}, x));
    check_forward("stem output", y, ref::relu(ref::conv_bn(x, v[0], {v[1], v[2]}, n, 1, c, side, 3, 1)));
    CHECK_FALSE(stem.backward(be, mb, ctx, ref::to_tensor(y.shape(), r)).defined());
    for (std::size_t i = 0; i < v.size(); ++i)
      check_grad(stem.params()[i]->name, stem.params()[i]->grad, ref::numeric_grad(f, v[i]));
  }
  SECTION("head: global average pooling -> linear") {
    ParamSet ps;
    CnnHead head(ps, c, classes, 7);
    Vec w = ref::random_vec(rng, classes * c, -0.5, 0.5), b = ref::random_vec(rng, classes, -0.5, 0.5);
    set_value(ps.find("fc.weight"), w);
    set_value(ps.find("fc.bias"), b);
    Vec x = ref::random_vec(rng, n * c * side * side, -1.0, 1.0);
    const Vec r = ref::random_vec(rng, n * classes, -1.0, 1.0);
    auto forward_ref = [&] { return ref::linear(ref::avgpool(x, n, c, side * side), w, b, n, c, classes); };
    auto f = [&] { return ref::dot(forward_ref(), r); };
    LayerCtx ctx;
    Tensor y = head.forward(be, mb, ctx, ref::to_tensor({n, c, side, side}, x));
    check_forward("head logits", y, forward_ref());
    Tensor dx = head.backward(be, mb, ctx, ref::to_tensor({n, classes}, r));
    check_grad("head dx", dx, ref::numeric_grad(f, x));
    check_grad("fc.weight", ps.find("fc.weight")->grad, ref::numeric_grad(f, w));
    check_grad("fc.bias", ps.find("fc.bias")->grad, ref::numeric_grad(f, b));
  }
}

// ---------------------------------------------------------------- model

TEST_CASE("the cnn model: PyTorch-like names, buffers apart from parameters, layers by block", "[cnn]") {
  const RunConfig config = load_config(std::nullopt, {"model.kind=cnn", "model.cnn_channels=4,8",
                                                      "model.cnn_blocks=2,1"});
  Model model(make_layer_specs(config.model, 1));
  // stem, blocks.0, blocks.1, blocks.2 (stride 2, projection), fc, loss
  REQUIRE(model.num_layers() == 6);
  CHECK(model.layer(3).name() == "blocks.2");
  const ParamSet& ps = model.params();
  CHECK(ps.find("stem.conv.weight")->value.shape() == Shape{4, 1, 3, 3});
  CHECK(ps.find("blocks.1.conv2.weight")->value.shape() == Shape{4, 4, 3, 3});
  CHECK(ps.find("blocks.2.conv1.weight")->value.shape() == Shape{8, 4, 3, 3});
  CHECK(ps.find("blocks.2.shortcut.conv.weight")->value.shape() == Shape{8, 4, 1, 1});
  CHECK(ps.find("blocks.0.shortcut.conv.weight") == nullptr);
  CHECK(ps.find("fc.weight")->value.shape() == Shape{10, 8});
  std::vector<std::string> buffers;
  for (const Param* b : ps.buffers()) buffers.push_back(b->name);
  CHECK(buffers.front() == "stem.bn.running_mean");
  CHECK(std::count(buffers.begin(), buffers.end(), "blocks.2.shortcut.bn.running_var") == 1);
  CHECK(buffers.size() == 2 * (1 + 2 * 3 + 1));
  for (const Param* b : ps.buffers()) CHECK_FALSE(b->grad.defined());
  CHECK(ps.state().size() == ps.all().size() + ps.buffers().size());
  // running_var starts at 1, running_mean at 0, as torch's.
  CHECK(ps.buffers()[1]->value.to_vector() == std::vector<float>(4, 1.0f));

  SECTION("a stride-2 stem halves the resolution before the stages") {
    const RunConfig c2 = load_config(std::nullopt, {"model.kind=cnn", "model.cnn_channels=4,8", "model.cnn_blocks=1,1",
                                                    "model.cnn_stem_stride=2", "train.threads=1"});
    Model m2(make_layer_specs(c2.model, 1));
    CpuBackend be(1);
    MicroBatch mb;
    std::vector<LayerCtx> ctxs = m2.make_contexts();
    Tensor x = Tensor::full({2, 784}, 0.5f);
    x.f32()[3] = 0.0f;  // two images that differ: batch statistics need some spread
    Tensor h = m2.layer(0).forward(be, mb, ctxs[0], x);
    CHECK(h.shape() == Shape{2, 4, 14, 14});
    h = m2.layer(1).forward(be, mb, ctxs[1], h);
    CHECK(h.shape() == Shape{2, 4, 14, 14});
    CHECK(m2.layer(2).forward(be, mb, ctxs[2], h).shape() == Shape{2, 8, 7, 7});
  }
}

TEST_CASE("cnn training: bitwise the same for 1 and 2 threads, buffers move, evaluation does not move them",
          "[cnn][determinism]") {
  if (!have_fashion_mnist()) {
    WARN("dataset-fashion-mnist is not installed; skipping");
    return;
  }
  auto run = [](int threads) {
    auto sets = kTinyCnn;
    sets.push_back("train.threads=" + std::to_string(threads));
    Trainer t(load_config(std::nullopt, sets));
    std::vector<double> losses;
    for (int s = 0; s < 3; ++s) losses.push_back(t.train_step(s).loss);
    std::vector<std::vector<float>> state;
    for (const Param* p : t.model().params().state()) state.push_back(p->value.to_vector());
    return std::make_pair(losses, state);
  };
  const auto one = run(1), two = run(2);
  CHECK(one.first == two.first);
  REQUIRE(one.second.size() == two.second.size());
  for (std::size_t i = 0; i < one.second.size(); ++i) CHECK(one.second[i] == two.second[i]);

  Trainer t(load_config(std::nullopt, kTinyCnn));
  const Param* rm = t.model().params().buffers().at(0);
  const std::vector<float> before = rm->value.to_vector();
  t.train_step(0);
  const std::vector<float> after = rm->value.to_vector();
  CHECK(after != before);
  const EvalStats e = t.evaluate();
  CHECK(e.rows == 10000);
  CHECK(rm->value.to_vector() == after);
}

TEST_CASE("cnn pipelines with one micro-batch are one device bitwise, running statistics included", "[cnn][pipeline]") {
  if (!have_fashion_mnist()) {
    WARN("dataset-fashion-mnist is not installed; skipping");
    return;
  }
  auto sets = kTinyCnn;
  sets.push_back("train.deterministic=true");
  const RunConfig config = load_config(std::nullopt, sets);
  const int steps = 3;
  const TrainingRun reference = single_device(config, steps);
  REQUIRE(reference.weights.count("stem.bn.running_mean"));
  SECTION("1f1b, 2 stages") { require_bitwise(pipelined(config, {2, 1, 1, ScheduleKind::one_f_one_b, ""}, steps), reference); }
  SECTION("gpipe, 3 stages") { require_bitwise(pipelined(config, {3, 1, 1, ScheduleKind::gpipe, ""}, steps), reference); }
  SECTION("interleaved, 2 stages x 2 chunks") {
    require_bitwise(pipelined(config, {2, 2, 1, ScheduleKind::interleaved, ""}, steps), reference);
  }
  SECTION("micro-batches normalise by their own statistics: a different run, still training") {
    const TrainingRun m2 = pipelined(config, {2, 1, 2, ScheduleKind::one_f_one_b, ""}, steps);
    CHECK(m2.losses[0] != reference.losses[0]);  // per-micro-batch statistics from the first forward on
    for (double l : m2.losses) CHECK(std::isfinite(l));
    CHECK(m2.weights.at("stem.bn.running_mean") != reference.weights.at("stem.bn.running_mean"));
  }
}

namespace {
// Every parameter and buffer of replica r, by name.
std::map<std::string, std::vector<float>> replica_state(DataParallelTrainer& t, int r) {
  std::map<std::string, std::vector<float>> w;
  for (Param* p : t.replica(r).weights_in_order()) w[p->name] = p->value.to_vector();
  return w;
}

std::map<std::string, std::vector<float>> state_of(Trainer& t) {
  std::map<std::string, std::vector<float>> w;
  for (Param* p : t.model().params().state()) w[p->name] = p->value.to_vector();
  return w;
}

bool is_running_stat(const std::string& name) { return name.find(".running_") != std::string::npos; }
}  // namespace

TEST_CASE("cnn data parallelism with synchronised batch norm is one device bitwise, running statistics included",
          "[cnn][data_parallel]") {
  if (!have_fashion_mnist()) {
    WARN("dataset-fashion-mnist is not installed; skipping");
    return;
  }
  auto sets = kTinyCnn;
  sets.insert(sets.end(), {"train.deterministic=true", "model.sync_batchnorm=true"});
  const int steps = 3;
  const TrainingRun reference = single_device(load_config(std::nullopt, sets), steps);
  REQUIRE(reference.weights.count("blocks.1.shortcut.bn.running_var"));
  auto with = [&](std::vector<std::string> more) {
    auto all = sets;
    all.insert(all.end(), more.begin(), more.end());
    return load_config(std::nullopt, all);
  };
  // data_parallel() also requires every replica's parameters and buffers to be the same.
  SECTION("2 replicas, ring, stage actors") { require_bitwise(data_parallel(with({"parallel.data=2"}), steps), reference); }
  SECTION("2 replicas, ring, in-process threads without actors") {
    require_bitwise(data_parallel(with({"parallel.data=2"}), steps, false), reference);
  }
  SECTION("4 replicas of 2 samples, alltoall") {
    require_bitwise(data_parallel(with({"parallel.data=4", "parallel.gradient_exchange=alltoall"}), steps), reference);
  }
  SECTION("dp 2 x pp 2: each stage's replicas sum their own layers' statistics") {
    require_bitwise(data_parallel(with({"parallel.data=2", "parallel.pipeline=2"}), steps), reference);
  }
  SECTION("fast mode: within float rounding of one device") {
    auto fast = sets;
    fast.erase(std::find(fast.begin(), fast.end(), "train.deterministic=true"));
    fast.push_back("parallel.data=2");
    const TrainingRun dp = data_parallel(load_config(std::nullopt, fast), steps);
    for (int s = 0; s < steps; ++s) CHECK(dp.losses[s] == Approx(reference.losses[s]).epsilon(1e-5));
  }
}

TEST_CASE("cnn data parallelism by default normalises each replica by its own share, as PyTorch DDP",
          "[cnn][data_parallel]") {
  if (!have_fashion_mnist()) {
    WARN("dataset-fashion-mnist is not installed; skipping");
    return;
  }
  auto sets = kTinyCnn;
  sets.push_back("train.deterministic=true");
  const RunConfig one = load_config(std::nullopt, sets);
  sets.push_back("parallel.data=2");
  const RunConfig config = load_config(std::nullopt, sets);
  const int steps = 3;
  // Gradients and losses: one device whose two micro-batches (the replicas' halves) are normalised by
  // their own statistics.
  const TrainingRun halves = pipelined(one, {1, 1, 2, ScheduleKind::gpipe, ""}, steps);

  // Running statistics: replica r's are those of forwards over half r of each batch alone, with the
  // weights the step began with (a model that only runs those forwards).
  Trainer half_model[2] = {Trainer(one), Trainer(one)};
  DataParallelTrainer dp(config);
  std::map<std::string, const Param*> replica0;
  for (const Param* p : dp.replica(0).weights_in_order()) replica0[p->name] = p;
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) {
    const Batch batch = dp.dataset().train_batch(s, one.train.batch_size);
    const std::int64_t per = batch.inputs.dim(0) / 2;
    for (int r = 0; r < 2; ++r) {
      Trainer& h = half_model[r];
      for (Param* p : h.model().params().all()) p->value.copy_from(replica0.at(p->name)->value);
      MicroBatch mb{.inputs = batch.inputs.slice(r * per, (r + 1) * per),
                    .targets = batch.targets.slice(r * per, (r + 1) * per)};
      std::vector<LayerCtx> ctxs = h.model().make_contexts();
      h.model().forward(h.backend(), mb, ctxs, mb.inputs);
    }
    losses.push_back(dp.train_step(s).loss);
  }
  for (int s = 0; s < steps; ++s) CHECK(losses[s] == halves.losses[s]);
  const auto r0 = replica_state(dp, 0), r1 = replica_state(dp, 1);
  int stats = 0;
  for (const auto& [name, value] : r0) {
    INFO(name);
    if (!is_running_stat(name)) {
      CHECK(value == halves.weights.at(name));  // parameters: the halves' run, and the same on both replicas
      CHECK(value == r1.at(name));
      continue;
    }
    ++stats;
    CHECK(value == state_of(half_model[0]).at(name));
    CHECK(r1.at(name) == state_of(half_model[1]).at(name));
    CHECK(value != r1.at(name));  // the replicas saw different images
  }
  CHECK(stats == 12);  // stem, 2 per block, the second block's shortcut: 6 batch norms x 2

  SECTION("weights files hold replica 0's running statistics, as DDP saves rank 0's") {
    TempDir dir;
    dp.save_weights(dir.file("w.safetensors"));
    for (auto& [name, t] : load_safetensors(dir.file("w.safetensors"))) {
      INFO(name);
      CHECK(t.to_vector() == r0.at(name));
    }
  }
}

TEST_CASE("cnn training in deterministic mode: bitwise the same for 1 and 3 threads, close to the fast mode",
          "[cnn][determinism]") {
  if (!have_fashion_mnist()) {
    WARN("dataset-fashion-mnist is not installed; skipping");
    return;
  }
  auto run = [](int threads, bool deterministic) {
    auto sets = kTinyCnn;
    sets.push_back("train.threads=" + std::to_string(threads));
    sets.push_back(std::string("train.deterministic=") + (deterministic ? "true" : "false"));
    Trainer t(load_config(std::nullopt, sets));
    std::vector<double> losses;
    for (int s = 0; s < 3; ++s) losses.push_back(t.train_step(s).loss);
    std::vector<std::vector<float>> state;
    for (const Param* p : t.model().params().state()) state.push_back(p->value.to_vector());
    return std::make_pair(losses, state);
  };
  const auto one = run(1, true), three = run(3, true), fast = run(1, false);
  CHECK(one.first == three.first);
  REQUIRE(one.second.size() == three.second.size());
  for (std::size_t i = 0; i < one.second.size(); ++i) CHECK(one.second[i] == three.second[i]);
  for (std::size_t s = 0; s < one.first.size(); ++s) CHECK(one.first[s] == Approx(fast.first[s]).epsilon(1e-4));
}

TEST_CASE("cnn weight files hold the running statistics and restore evaluation exactly", "[cnn]") {
  if (!have_fashion_mnist()) {
    WARN("dataset-fashion-mnist is not installed; skipping");
    return;
  }
  TempDir dir;
  auto sets = kTinyCnn;
  sets.push_back("train.eval_batches=2");
  Trainer a(load_config(std::nullopt, sets));
  for (int s = 0; s < 3; ++s) a.train_step(s);
  a.save_weights(dir.file("w.safetensors"));
  std::map<std::string, Tensor> file;
  for (auto& [name, t] : load_safetensors(dir.file("w.safetensors"))) file.emplace(name, t);
  REQUIRE(file.size() == a.model().params().state().size());
  for (const Param* p : a.model().params().state()) {
    INFO(p->name);
    REQUIRE(file.count(p->name));
    CHECK(file.at(p->name).to_vector() == p->value.to_vector());
  }
  CHECK(file.count("blocks.1.shortcut.bn.running_var"));

  Trainer b(load_config(std::nullopt, sets));
  b.load_weights(dir.file("w.safetensors"));
  for (const Param* p : b.model().params().state())
    CHECK(p->value.to_vector() == file.at(p->name).to_vector());
  const EvalStats ea = a.evaluate(), eb = b.evaluate();
  CHECK(ea.loss == eb.loss);
  CHECK(ea.accuracy == eb.accuracy);
}

TEST_CASE("cnn config validation names the conflicting keys", "[cnn][config]") {
  auto error = [](std::vector<std::string> sets) {
    sets.insert(sets.begin(), "model.kind=cnn");
    return config_error([&] { load_config(std::nullopt, sets); });
  };
  CHECK_THAT(error({"model.cnn_channels=8,16", "model.cnn_blocks=1"}),
             Contains("model.cnn_blocks = 1 has 1 entries for the 2 stages of model.cnn_channels = 8,16"));
  CHECK_THAT(error({"model.cnn_channels=", "model.cnn_blocks="}), Contains("model.cnn_channels is empty"));
  CHECK_THAT(error({"model.cnn_channels=1,1,1,1,1,1,1", "model.cnn_blocks=1,1,1,1,1,1,1"}),
             Contains("at most 6"));
  CHECK_THAT(error({"model.cnn_channels=1,1,1,1,1,1", "model.cnn_blocks=1,1,1,1,1,1", "model.cnn_stem_stride=2"}),
             Contains("at most 5 with model.cnn_stem_stride = 2"));
  CHECK_THAT(error({"model.cnn_stem_stride=3"}), Contains("model.cnn_stem_stride"));
  CHECK_THAT(error({"train.device=cuda"}), Contains("use train.device = cpu"));
  CHECK_THAT(error({"parallel.gradient_exchange=ps"}), Contains("parallel.gradient_exchange = ps") &&
                                                          Contains("use parallel.gradient_exchange = ring or alltoall"));
  CHECK_THAT(config_error([] { load_config(std::nullopt, {"model.kind=gpt", "model.sync_batchnorm=true"}); }),
             Contains("model.sync_batchnorm = true with model.kind = gpt") && Contains("no batch normalisation"));
  CHECK_THAT(config_error([] { load_config(std::nullopt, {"model.kind=lstm", "model.sync_batchnorm=true"}); }),
             Contains("model.sync_batchnorm = true with model.kind = lstm"));
  CHECK_NOTHROW(load_config(std::nullopt, {"model.kind=cnn", "parallel.data=2"}));
  CHECK_NOTHROW(load_config(std::nullopt, {"model.kind=cnn", "parallel.data=2", "model.sync_batchnorm=true"}));
  CHECK_NOTHROW(load_config(std::nullopt, {"model.kind=cnn", "model.sync_batchnorm=true"}));  // one device: a no-op
  CHECK_NOTHROW(load_config(std::nullopt, {"model.kind=cnn", "parallel.pipeline=2", "parallel.microbatches=2"}));
  CHECK_NOTHROW(load_config(std::nullopt, {"model.kind=cnn", "model.cnn_channels=8", "model.cnn_blocks=3"}));
}

// ---------------------------------------------------------------- front ends

TEST_CASE("troupe train --set model.kind=cnn trains, reports test accuracy and writes running statistics", "[cnn][cli]") {
  if (!have_fashion_mnist()) {
    WARN("dataset-fashion-mnist is not installed; skipping");
    return;
  }
  TempDir dir;
  const TroupeRun r = run_troupe(dir.path, "train --set model.kind=cnn --set model.cnn_channels=4,8 --set "
                                           "model.cnn_blocks=1,1 --set train.batch_size=16 --set train.steps=3 --set "
                                           "train.threads=1 --save " + dir.file("w.safetensors"));
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Contains("cnn (channels=4,8 blocks=1,1)"));
  CHECK_THAT(r.out, Contains("test accuracy"));
  bool found = false;
  for (auto& [name, t] : load_safetensors(dir.file("w.safetensors"))) found |= name == "stem.bn.running_mean";
  CHECK(found);

  const TroupeRun bad = run_troupe(dir.path, "train --set model.kind=mlp --set model.sync_batchnorm=true");
  CHECK(bad.code == 2);
  CHECK_THAT(bad.err, Contains("model.sync_batchnorm = true with model.kind = mlp: that model has no batch normalisation"));
}

TEST_CASE("Session trains the cnn, evaluates and round-trips its weights", "[cnn][session]") {
  if (!have_fashion_mnist()) {
    WARN("dataset-fashion-mnist is not installed; skipping");
    return;
  }
  TempDir dir;
  auto sets = kTinyCnn;
  sets.push_back("train.steps=2");
  auto session = Session::create(load_config(std::nullopt, sets));
  REQUIRE(session);
  REQUIRE((*session)->step());
  REQUIRE((*session)->step());
  auto e = (*session)->evaluate();
  REQUIRE(e);
  CHECK(e->accuracy >= 0.0);
  REQUIRE((*session)->save_weights(dir.file("s.safetensors")));
  auto other = Session::create(load_config(std::nullopt, sets));
  REQUIRE(other);
  REQUIRE((*other)->load_weights(dir.file("s.safetensors")));
  CHECK((*other)->evaluate()->loss == e->loss);
}
