// Owns the gradient checks: every layer's and backend op's f32 backward against double finite differences.
//
// Each check builds small random inputs and weights (fixed seeds), runs troupe's forward and backward in
// f32, and compares with a double-precision reference forward (tests/reference_ops.h) differentiated by
// central differences. The scalar differentiated is sum(out * R) for a random R (R is then the upstream
// gradient), or the mean loss for loss layers (MicroBatch.loss_scale = 1 / rows).
//
// Tolerances, as relative errors max|got - want| / max(max|want|, 1e-3):
//   gradients  <= 1e-3   (kGradTol)
//   forwards   <= 1e-5   (kFwdTol)
//   second backward == 2 x first backward within 1e-6 (kAccumTol): parameter gradients accumulate.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>

#include "models/gpt_layers.h"
#include "models/mlp_layers.h"
#include "models/model.h"
#include "runtime/cpu/cpu_backend.h"
#include "tests/gradient_check.h"
#include "tests/reference_ops.h"

using namespace troupe;
using ref::Ids;
using ref::Vec;
using ref::check_accumulated;
using ref::check_forward;
using ref::check_grad;
using ref::max_abs;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

void set_value(Param* p, const Vec& v) { p->value.copy_from(ref::to_tensor(p->value.shape(), v)); }

Tensor ids_tensor(const Shape& shape, const Ids& ids) { return Tensor::from_i32(shape, ids); }

Tensor nan_tensor(const Shape& shape) { return Tensor::full(shape, kNaN); }

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Random values for a GPT parameter: LayerNorm gains around 1, everything else around 0 (never the
// constant initialisation, so that every term of the backward is exercised).
Vec random_param(std::mt19937_64& rng, const Param& p) {
  const auto n = static_cast<std::size_t>(p.value.numel());
  if (ends_with(p.name, "ln_1.weight") || ends_with(p.name, "ln_2.weight") || ends_with(p.name, "ln_f.weight"))
    return ref::random_vec(rng, n, 0.5, 1.5);
  if (ends_with(p.name, "wte.weight") || ends_with(p.name, "wpe.weight")) return ref::random_vec(rng, n, -1.0, 1.0);
  return ref::random_vec(rng, n, -0.5, 0.5);
}

// Small GPT shape used throughout: B=2, T=5, C=8, H=2, V=11 (block_size 7 > T, so some wpe rows are unused).
constexpr std::int64_t kB = 2, kT = 5, kC = 8, kH = 2, kV = 11;
const GptShape kShape{1, static_cast<int>(kH), static_cast<int>(kC), 7, static_cast<int>(kV)};
// Tokens with repeats (1, 3, 5) and unused ids (0, 7, 8, 10): embedding gradients must add up and stay zero.
const Ids kTokens = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3};

ref::BlockParams block_params_from(const std::vector<Vec>& v) {
  return {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11]};
}

}  // namespace

// ---------------------------------------------------------------- layers

TEST_CASE("GptBlock backward matches finite differences of a double reference", "[gradcheck]") {
  ParamSet ps;
  GptBlock block(ps, kShape, 0, 7);
  std::mt19937_64 rng(101);
  std::vector<Param*> params = block.params();
  REQUIRE(params.size() == 12);
  std::vector<Vec> values;
  for (Param* p : params) {
    values.push_back(random_param(rng, *p));
    set_value(p, values.back());
  }
  Vec x = ref::random_vec(rng, kB * kT * kC, -1.5, 1.5);
  const Vec r = ref::random_vec(rng, kB * kT * kC, -1.0, 1.0);

  // f(x, params) = sum(block(x) * R); the lambda reads `values` and `x`, which numeric_grad perturbs.
  auto f = [&] { return ref::dot(ref::gpt_block(x, block_params_from(values), kB, kT, kC, kH), r); };

  CpuBackend be(2);
  MicroBatch mb;
  mb.row_block = kT;
  LayerCtx ctx;
  const Tensor xt = ref::to_tensor({kB, kT, kC}, x);
  const Tensor rt = ref::to_tensor({kB, kT, kC}, r);
  Tensor y = block.forward(be, mb, ctx, xt);
  REQUIRE(y.shape() == Shape{kB, kT, kC});
  check_forward("block output", y, ref::gpt_block(x, block_params_from(values), kB, kT, kC, kH));
  Tensor dx = block.backward(be, mb, ctx, rt);
  REQUIRE(dx.shape() == Shape{kB, kT, kC});
  check_grad("block dx", dx, ref::numeric_grad(f, x));
  std::vector<Vec> once;
  for (std::size_t i = 0; i < params.size(); ++i) {
    check_grad(params[i]->name, params[i]->grad, ref::numeric_grad(f, values[i]));
    once.push_back(ref::to_vec(params[i]->grad));
  }

  SECTION("a second backward adds the same gradient again") {
    block.forward(be, mb, ctx, xt);
    block.backward(be, mb, ctx, rt);
    for (std::size_t i = 0; i < params.size(); ++i) check_accumulated(params[i]->name, params[i]->grad, once[i]);
  }
}

TEST_CASE("GptEmbedding backward matches finite differences", "[gradcheck]") {
  ParamSet ps;
  GptEmbedding emb(ps, kShape, 7);
  std::mt19937_64 rng(202);
  Param* wte = ps.find("transformer.wte.weight");
  Param* wpe = ps.find("transformer.wpe.weight");
  REQUIRE(wte);
  REQUIRE(wpe);
  Vec wte_v = random_param(rng, *wte), wpe_v = random_param(rng, *wpe);
  set_value(wte, wte_v);
  set_value(wpe, wpe_v);
  const Vec r = ref::random_vec(rng, kB * kT * kC, -1.0, 1.0);
  auto f = [&] { return ref::dot(ref::gpt_embedding(kTokens, wte_v, wpe_v, kB, kT, kC), r); };

  CpuBackend be(2);
  MicroBatch mb;
  mb.inputs = ids_tensor({kB, kT}, kTokens);
  mb.row_block = kT;
  LayerCtx ctx;
  const Tensor rt = ref::to_tensor({kB, kT, kC}, r);
  Tensor y = emb.forward(be, mb, ctx, mb.inputs);
  REQUIRE(y.shape() == Shape{kB, kT, kC});
  check_forward("embedding output", y, ref::gpt_embedding(kTokens, wte_v, wpe_v, kB, kT, kC));
  Tensor dx = emb.backward(be, mb, ctx, rt);
  CHECK_FALSE(dx.defined());  // the first layer has no input gradient
  check_grad("wte", wte->grad, ref::numeric_grad(f, wte_v));
  check_grad("wpe", wpe->grad, ref::numeric_grad(f, wpe_v));
  // Rows never looked up get exactly nothing.
  for (int id : {0, 7, 8, 10})
    for (std::int64_t j = 0; j < kC; ++j) CHECK(wte->grad.f32()[id * kC + j] == 0.0f);
  for (std::int64_t t = kT; t < kShape.block_size; ++t)
    for (std::int64_t j = 0; j < kC; ++j) CHECK(wpe->grad.f32()[t * kC + j] == 0.0f);

  SECTION("a second backward adds the same gradient again") {
    const Vec wte_once = ref::to_vec(wte->grad), wpe_once = ref::to_vec(wpe->grad);
    emb.forward(be, mb, ctx, mb.inputs);
    emb.backward(be, mb, ctx, rt);
    check_accumulated("wte", wte->grad, wte_once);
    check_accumulated("wpe", wpe->grad, wpe_once);
  }
}

TEST_CASE("GptHead backward matches finite differences of the mean loss", "[gradcheck]") {
  ParamSet ps;
  GptEmbedding emb(ps, kShape, 7);  // registers the tied wte
  GptHead head(ps, kShape, 7);
  std::mt19937_64 rng(303);
  Param* wte = ps.find("transformer.wte.weight");
  Param* lnf_w = ps.find("transformer.ln_f.weight");
  Param* lnf_b = ps.find("transformer.ln_f.bias");
  REQUIRE((wte && lnf_w && lnf_b));
  REQUIRE(head.params() == std::vector<Param*>{lnf_w, lnf_b});
  Vec wte_v = random_param(rng, *wte), w_v = random_param(rng, *lnf_w), b_v = random_param(rng, *lnf_b);
  set_value(wte, wte_v);
  set_value(lnf_w, w_v);
  set_value(lnf_b, b_v);
  Vec x = ref::random_vec(rng, kB * kT * kC, -1.5, 1.5);
  const Ids targets = ref::random_ids(rng, kB * kT, kV);
  const std::int64_t n = kB * kT;
  auto losses_ref = [&] { return ref::gpt_head(x, w_v, b_v, wte_v, targets, n, kC, kV); };
  auto f = [&] { return ref::sum(losses_ref()) / static_cast<double>(n); };

  CpuBackend be(2);
  MicroBatch mb;
  mb.inputs = ids_tensor({kB, kT}, kTokens);
  mb.targets = ids_tensor({kB, kT}, targets);
  mb.loss_scale = 1.0f / static_cast<float>(n);
  mb.row_block = kT;
  LayerCtx ctx;
  const Tensor xt = ref::to_tensor({kB, kT, kC}, x);
  Tensor losses = head.forward(be, mb, ctx, xt);
  REQUIRE(losses.numel() == n);
  check_forward("head per-token losses", losses, losses_ref());
  // Class probabilities are softmax(logits) of the reference.
  {
    const Vec h = ref::layernorm(x, w_v, b_v, n, kC).y;
    check_forward("head probabilities", head.probabilities(ctx), ref::softmax(ref::linear(h, wte_v, Vec(), n, kC, kV), n, kV));
  }
  Tensor dx = head.backward(be, mb, ctx, Tensor());
  REQUIRE(dx.shape() == Shape{kB, kT, kC});
  check_grad("head dx", dx, ref::numeric_grad(f, x));
  check_grad("ln_f.weight", lnf_w->grad, ref::numeric_grad(f, w_v));
  check_grad("ln_f.bias", lnf_b->grad, ref::numeric_grad(f, b_v));
  const Vec wte_num = ref::numeric_grad(f, wte_v);
  // The tied weight's gradient is held back until folded.
  CHECK(max_abs(ref::to_vec(wte->grad)) == 0.0);
  head.fold_extra_grads();
  check_grad("wte (tied, folded)", wte->grad, wte_num);

  SECTION("a second backward adds the same gradient again, including the tied buffer") {
    const Vec w_once = ref::to_vec(lnf_w->grad), b_once = ref::to_vec(lnf_b->grad), wte_once = ref::to_vec(wte->grad);
    ps.zero_grad();  // wte.grad only; the head's own buffer keeps the first pass
    lnf_w->grad.copy_from(ref::to_tensor(lnf_w->grad.shape(), w_once));
    lnf_b->grad.copy_from(ref::to_tensor(lnf_b->grad.shape(), b_once));
    head.forward(be, mb, ctx, xt);
    head.backward(be, mb, ctx, Tensor());
    head.fold_extra_grads();
    check_accumulated("ln_f.weight", lnf_w->grad, w_once);
    check_accumulated("ln_f.bias", lnf_b->grad, b_once);
    check_accumulated("wte (tied)", wte->grad, wte_once);
  }
  SECTION("zero_extra_grads resets the tied buffer") {
    const Vec wte_once = ref::to_vec(wte->grad);
    ps.zero_grad();
    head.zero_extra_grads();
    head.forward(be, mb, ctx, xt);
    head.backward(be, mb, ctx, Tensor());
    head.fold_extra_grads();
    CHECK(ref::rel_err(ref::to_vec(wte->grad), wte_once) <= ref::kAccumTol);
  }
}

TEST_CASE("DenseLayer backward matches finite differences, with and without ReLU", "[gradcheck]") {
  const bool relu = GENERATE(false, true);
  INFO("relu " << relu);
  constexpr std::int64_t n = 6, in = 7, out = 5;
  ParamSet ps;
  DenseLayer dense(ps, 1, in, out, relu, 7);
  Param* w = ps.find("layers.1.weight");
  Param* b = ps.find("layers.1.bias");
  REQUIRE((w && b));
  std::mt19937_64 rng(404);
  Vec w_v, b_v, x;
  // Draw until every pre-activation is at least 1e-2 from ReLU's kink (finite differences step 1e-5),
  // with both signs present so the mask matters.
  for (;;) {
    w_v = ref::random_vec(rng, out * in, -0.6, 0.6);
    b_v = ref::random_vec(rng, out, -0.3, 0.3);
    x = ref::random_vec(rng, n * in, -1.5, 1.5);
    const Vec z = ref::linear(x, w_v, b_v, n, in, out);
    double closest = INFINITY;
    int neg = 0;
    for (double v : z) closest = std::min(closest, std::abs(v)), neg += v < 0;
    if (closest > 1e-2 && neg > 3 && neg < static_cast<int>(z.size()) - 3) break;
  }
  set_value(w, w_v);
  set_value(b, b_v);
  const Vec r = ref::random_vec(rng, n * out, -1.0, 1.0);
  auto f = [&] { return ref::dot(ref::dense(x, w_v, b_v, n, in, out, relu), r); };

  CpuBackend be(2);
  MicroBatch mb;
  LayerCtx ctx;
  const Tensor xt = ref::to_tensor({n, in}, x);
  const Tensor rt = ref::to_tensor({n, out}, r);
  Tensor y = dense.forward(be, mb, ctx, xt);
  check_forward("dense output", y, ref::dense(x, w_v, b_v, n, in, out, relu));
  Tensor dx = dense.backward(be, mb, ctx, rt);
  REQUIRE(dx.defined());
  check_grad("dense dx", dx, ref::numeric_grad(f, x));
  check_grad("dense weight", w->grad, ref::numeric_grad(f, w_v));
  check_grad("dense bias", b->grad, ref::numeric_grad(f, b_v));

  SECTION("a second backward adds the same gradient again") {
    const Vec w_once = ref::to_vec(w->grad), b_once = ref::to_vec(b->grad);
    dense.forward(be, mb, ctx, xt);
    dense.backward(be, mb, ctx, rt);
    check_accumulated("dense weight", w->grad, w_once);
    check_accumulated("dense bias", b->grad, b_once);
  }
  SECTION("the first layer returns no input gradient but the same parameter gradients") {
    ParamSet ps0;
    DenseLayer first(ps0, 0, in, out, relu, 7);
    set_value(ps0.find("layers.0.weight"), w_v);
    set_value(ps0.find("layers.0.bias"), b_v);
    LayerCtx c0;
    first.forward(be, mb, c0, xt);
    CHECK_FALSE(first.backward(be, mb, c0, rt).defined());
    CHECK(ref::to_vec(ps0.find("layers.0.weight")->grad) == ref::to_vec(w->grad));
    CHECK(ref::to_vec(ps0.find("layers.0.bias")->grad) == ref::to_vec(b->grad));
  }
}

TEST_CASE("SoftmaxCrossEntropy backward matches finite differences of the mean loss", "[gradcheck]") {
  constexpr std::int64_t n = 6, k = 10;
  std::mt19937_64 rng(505);
  Vec logits = ref::random_vec(rng, n * k, -3.0, 3.0);
  const Ids targets = ref::random_ids(rng, n, k);
  auto f = [&] { return ref::sum(ref::cross_entropy(logits, targets, n, k)) / n; };

  SoftmaxCrossEntropy loss;
  CHECK(loss.params().empty());
  CpuBackend be(2);
  MicroBatch mb;
  mb.targets = ids_tensor({n}, targets);
  mb.loss_scale = 1.0f / n;
  LayerCtx ctx;
  Tensor losses = loss.forward(be, mb, ctx, ref::to_tensor({n, k}, logits));
  REQUIRE(losses.numel() == n);
  check_forward("per-row losses", losses, ref::cross_entropy(logits, targets, n, k));
  check_forward("probabilities", loss.probabilities(ctx), ref::softmax(logits, n, k));
  Tensor dlogits = loss.backward(be, mb, ctx, Tensor());
  REQUIRE(dlogits.shape() == Shape{n, k});
  check_grad("dlogits", dlogits, ref::numeric_grad(f, logits));
}

TEST_CASE("Tied wte: the head's gradient reaches wte.grad only at Model::finish_grads", "[gradcheck]") {
  // A whole one-block GPT through Model: embedding -> block -> head, every parameter checked.
  std::vector<LayerSpec> specs;
  specs.push_back({"emb", 0.0, [](ParamSet& p) { return std::make_unique<GptEmbedding>(p, kShape, 7); }});
  specs.push_back({"h0", 0.0, [](ParamSet& p) { return std::make_unique<GptBlock>(p, kShape, 0, 7); }});
  specs.push_back({"head", 0.0, [](ParamSet& p) { return std::make_unique<GptHead>(p, kShape, 7); }});
  Model model(specs);
  std::mt19937_64 rng(606);
  std::vector<Vec> values;
  for (Param* p : model.params().all()) {
    values.push_back(random_param(rng, *p));
    set_value(p, values.back());
  }
  const auto index = [&](const std::string& name) {
    const auto& all = model.params().all();
    for (std::size_t i = 0; i < all.size(); ++i)
      if (all[i]->name == name) return i;
    FAIL("no parameter " << name);
    return std::size_t{0};
  };
  const std::size_t i_wte = index("transformer.wte.weight"), i_wpe = index("transformer.wpe.weight"),
                    i_blk = index("transformer.h.0.ln_1.weight"), i_lnw = index("transformer.ln_f.weight"),
                    i_lnb = index("transformer.ln_f.bias");
  REQUIRE(i_blk + 12 <= values.size());
  const Ids targets = ref::random_ids(rng, kB * kT, kV);
  const std::int64_t n = kB * kT;
  // The head reads its own copy of wte so that the two uses can be differentiated separately.
  Vec wte_head = values[i_wte];
  auto losses_ref = [&] {
    std::vector<Vec> blk(values.begin() + i_blk, values.begin() + i_blk + 12);
    const Vec x = ref::gpt_embedding(kTokens, values[i_wte], values[i_wpe], kB, kT, kC);
    const Vec h = ref::gpt_block(x, block_params_from(blk), kB, kT, kC, kH);
    return ref::gpt_head(h, values[i_lnw], values[i_lnb], wte_head, targets, n, kC, kV);
  };
  auto f = [&] { return ref::sum(losses_ref()) / static_cast<double>(n); };

  CpuBackend be(2);
  MicroBatch mb;
  mb.inputs = ids_tensor({kB, kT}, kTokens);
  mb.targets = ids_tensor({kB, kT}, targets);
  mb.loss_scale = 1.0f / static_cast<float>(n);
  mb.row_block = kT;
  auto ctxs = model.make_contexts();
  model.zero_grad();
  Tensor losses = model.forward(be, mb, ctxs, mb.inputs);
  check_forward("model per-token losses", losses, losses_ref());
  CHECK_FALSE(model.backward(be, mb, ctxs, Tensor()).defined());

  const Vec wte_from_embedding = ref::numeric_grad(f, values[i_wte]);
  const Vec wte_from_head = ref::numeric_grad(f, wte_head);
  const Vec wte_total = ref::add(wte_from_embedding, wte_from_head);
  // The head's share is large, so a missing or doubled fold would be caught.
  REQUIRE(max_abs(wte_from_head) > 0.1 * max_abs(wte_from_embedding));
  Param* wte = model.params().all()[i_wte];
  check_grad("wte before finish_grads (embedding's share only)", wte->grad, wte_from_embedding);
  model.finish_grads();
  check_grad("wte after finish_grads (embedding + head)", wte->grad, wte_total);
  for (std::size_t i = 0; i < values.size(); ++i)
    if (i != i_wte) check_grad(model.params().all()[i]->name, model.params().all()[i]->grad, ref::numeric_grad(f, values[i]));

  SECTION("zero_grad also clears the head's tied buffer") {
    model.zero_grad();
    CHECK(max_abs(ref::to_vec(wte->grad)) == 0.0);
    model.forward(be, mb, ctxs, mb.inputs);
    model.backward(be, mb, ctxs, Tensor());
    model.finish_grads();
    check_grad("wte after zero_grad and one more step", wte->grad, wte_total);
  }
}

// ---------------------------------------------------------------- backend ops

TEST_CASE("linear: forward and backward against the reference", "[gradcheck]") {
  const bool with_bias = GENERATE(true, false);
  const bool deterministic = GENERATE(false, true);
  INFO("bias " << with_bias << ", deterministic " << deterministic);
  constexpr std::int64_t n = kB * kT, in = 8, out = 12;
  std::mt19937_64 rng(707);
  Vec x = ref::random_vec(rng, n * in, -1.5, 1.5), w = ref::random_vec(rng, out * in, -0.5, 0.5);
  Vec b = with_bias ? ref::random_vec(rng, out, -0.5, 0.5) : Vec();
  const Vec r = ref::random_vec(rng, n * out, -1.0, 1.0);
  auto f = [&] { return ref::dot(ref::linear(x, w, b, n, in, out), r); };

  CpuBackend be(2);
  be.set_deterministic(deterministic);
  const Tensor xt = ref::to_tensor({n, in}, x), wt = ref::to_tensor({out, in}, w), rt = ref::to_tensor({n, out}, r);
  const Tensor bt = with_bias ? ref::to_tensor({out}, b) : Tensor();
  Tensor y = nan_tensor({n, out});
  be.linear_forward(xt, wt, bt, y);
  check_forward("linear y", y, ref::linear(x, w, b, n, in, out));

  Tensor dx = nan_tensor({n, in});  // overwritten
  Tensor dw = Tensor::zeros({out, in});
  Tensor db = with_bias ? Tensor::zeros({out}) : Tensor();
  // In deterministic mode parameter gradients build up as exact sums until flushed into the float buffers.
  auto flush = [&] {
    be.flush_exact_grad(dw);
    if (with_bias) be.flush_exact_grad(db);
  };
  be.linear_backward(rt, xt, wt, dx, dw, db, kT);
  if (deterministic) flush();
  check_grad("linear dx", dx, ref::numeric_grad(f, x));
  check_grad("linear dw", dw, ref::numeric_grad(f, w));
  if (with_bias) check_grad("linear db", db, ref::numeric_grad(f, b));

  const Vec dw_once = ref::to_vec(dw), db_once = with_bias ? ref::to_vec(db) : Vec();
  // Without dx: only the parameter gradients, accumulated onto the first pass.
  be.linear_backward(rt, xt, wt, Tensor(), dw, db, kT);
  if (deterministic) flush();
  check_accumulated("linear dw", dw, dw_once);
  if (with_bias) check_accumulated("linear db", db, db_once);
}

TEST_CASE("gelu: forward and backward against the reference", "[gradcheck]") {
  constexpr std::int64_t n = 64;
  std::mt19937_64 rng(808);
  Vec x = ref::random_vec(rng, n, -4.0, 4.0);
  const Vec r = ref::random_vec(rng, n, -1.0, 1.0);
  auto f = [&] { return ref::dot(ref::gelu(x), r); };
  CpuBackend be(2);
  const Tensor xt = ref::to_tensor({n}, x);
  Tensor y = nan_tensor({n});
  be.gelu_forward(xt, y);
  check_forward("gelu y", y, ref::gelu(x));
  Tensor dx = nan_tensor({n});
  be.gelu_backward(xt, ref::to_tensor({n}, r), dx);
  const Vec num = ref::numeric_grad(f, x);
  check_grad("gelu dx", dx, num);
  // In place (dy and dx the same tensor), as GptBlock calls it.
  Tensor inplace = ref::to_tensor({n}, r);
  be.gelu_backward(xt, inplace, inplace);
  CHECK(ref::to_vec(inplace) == ref::to_vec(dx));
}

TEST_CASE("relu: forward and backward against the reference", "[gradcheck]") {
  constexpr std::int64_t n = 64;
  std::mt19937_64 rng(909);
  Vec x = ref::random_nonzero(rng, n, -2.0, 2.0, 1e-2);
  const Vec r = ref::random_vec(rng, n, -1.0, 1.0);
  auto f = [&] { return ref::dot(ref::relu(x), r); };
  CpuBackend be(2);
  Tensor y = nan_tensor({n});
  be.relu_forward(ref::to_tensor({n}, x), y);
  check_forward("relu y", y, ref::relu(x));
  Tensor dx = nan_tensor({n});
  be.relu_backward(y, ref::to_tensor({n}, r), dx);
  check_grad("relu dx", dx, ref::numeric_grad(f, x));
}

TEST_CASE("softmax: forward and backward against the reference", "[gradcheck]") {
  constexpr std::int64_t n = 6, c = 9;
  std::mt19937_64 rng(1010);
  Vec x = ref::random_vec(rng, n * c, -3.0, 3.0);
  const Vec r = ref::random_vec(rng, n * c, -1.0, 1.0);
  auto f = [&] { return ref::dot(ref::softmax(x, n, c), r); };
  CpuBackend be(2);
  Tensor y = nan_tensor({n, c});
  be.softmax_forward(ref::to_tensor({n, c}, x), y);
  check_forward("softmax y", y, ref::softmax(x, n, c));
  Tensor dx = nan_tensor({n, c});
  be.softmax_backward(y, ref::to_tensor({n, c}, r), dx);
  check_grad("softmax dx", dx, ref::numeric_grad(f, x));
}

TEST_CASE("layernorm: forward and backward against the reference", "[gradcheck]") {
  constexpr std::int64_t n = 6, c = 8;
  std::mt19937_64 rng(1111);
  Vec x = ref::random_vec(rng, n * c, -2.0, 2.0);
  for (std::int64_t i = 0; i < n * c; ++i) x[i] = static_cast<float>(x[i] + 0.5 * (i / c));  // rows with non-zero means
  Vec w = ref::random_vec(rng, c, 0.5, 1.5), b = ref::random_vec(rng, c, -0.5, 0.5);
  const Vec r = ref::random_vec(rng, n * c, -1.0, 1.0);
  auto f = [&] { return ref::dot(ref::layernorm(x, w, b, n, c).y, r); };
  CpuBackend be(2);
  const Tensor xt = ref::to_tensor({n, c}, x), wt = ref::to_tensor({c}, w), rt = ref::to_tensor({n, c}, r);
  Tensor y = nan_tensor({n, c}), mean = nan_tensor({n}), rstd = nan_tensor({n});
  be.layernorm_forward(xt, wt, ref::to_tensor({c}, b), 1e-5f, y, mean, rstd);
  const ref::LnOut want = ref::layernorm(x, w, b, n, c);
  check_forward("layernorm y", y, want.y);
  check_forward("layernorm mean", mean, want.mean);
  check_forward("layernorm rstd", rstd, want.rstd);
  Tensor dx = nan_tensor({n, c}), dw = Tensor::zeros({c}), db = Tensor::zeros({c});
  be.layernorm_backward(rt, xt, wt, mean, rstd, dx, dw, db);
  check_grad("layernorm dx", dx, ref::numeric_grad(f, x));
  check_grad("layernorm dw", dw, ref::numeric_grad(f, w));
  check_grad("layernorm db", db, ref::numeric_grad(f, b));
  const Vec dw_once = ref::to_vec(dw), db_once = ref::to_vec(db);
  be.layernorm_backward(rt, xt, wt, mean, rstd, dx, dw, db);
  check_accumulated("layernorm dw", dw, dw_once);
  check_accumulated("layernorm db", db, db_once);
}

TEST_CASE("embedding: forward and backward against the reference", "[gradcheck]") {
  std::mt19937_64 rng(1212);
  Vec table = ref::random_vec(rng, kV * kC, -1.0, 1.0);
  const Vec r = ref::random_vec(rng, kB * kT * kC, -1.0, 1.0);
  auto f = [&] { return ref::dot(ref::embedding(kTokens, table, kC), r); };
  CpuBackend be(2);
  const Tensor ids = ids_tensor({kB * kT}, kTokens);
  Tensor y = nan_tensor({kB * kT, kC});
  be.embedding_forward(ids, ref::to_tensor({kV, kC}, table), y);
  CHECK(ref::to_vec(y) == ref::embedding(kTokens, table, kC));  // a copy: exact
  Tensor dtable = Tensor::zeros({kV, kC});
  be.embedding_backward(ids, ref::to_tensor({kB * kT, kC}, r), dtable);
  check_grad("embedding dtable", dtable, ref::numeric_grad(f, table));
  const Vec once = ref::to_vec(dtable);
  be.embedding_backward(ids, ref::to_tensor({kB * kT, kC}, r), dtable);
  check_accumulated("embedding dtable", dtable, once);
}

TEST_CASE("attention: forward and backward against the reference", "[gradcheck]") {
  std::mt19937_64 rng(1313);
  Vec qkv = ref::random_vec(rng, kB * kT * 3 * kC, -1.5, 1.5);
  const Vec r = ref::random_vec(rng, kB * kT * kC, -1.0, 1.0);
  auto f = [&] { return ref::dot(ref::attention(qkv, kB, kT, kC, kH).out, r); };
  CpuBackend be(2);
  const Tensor qkvt = ref::to_tensor({kB, kT, 3 * kC}, qkv);
  Tensor out = nan_tensor({kB, kT, kC}), probs = nan_tensor({kB, kH, kT, kT});
  be.attention_forward(qkvt, static_cast<int>(kH), out, probs);
  const ref::AttnOut want = ref::attention(qkv, kB, kT, kC, kH);
  check_forward("attention out", out, want.out);
  check_forward("attention probs", probs, want.probs);
  // Causal: nothing attends to the future.
  for (std::int64_t bh = 0; bh < kB * kH; ++bh)
    for (std::int64_t t = 0; t < kT; ++t)
      for (std::int64_t s = t + 1; s < kT; ++s) CHECK(probs.f32()[(bh * kT + t) * kT + s] == 0.0f);
  Tensor dqkv = nan_tensor({kB, kT, 3 * kC});
  be.attention_backward(ref::to_tensor({kB, kT, kC}, r), qkvt, probs, static_cast<int>(kH), dqkv);
  check_grad("attention dqkv", dqkv, ref::numeric_grad(f, qkv));
}

TEST_CASE("cross_entropy: forward and backward against the reference", "[gradcheck]") {
  constexpr std::int64_t n = kB * kT;
  std::mt19937_64 rng(1414);
  Vec logits = ref::random_vec(rng, n * kV, -3.0, 3.0);
  const Ids targets = ref::random_ids(rng, n, kV);
  auto f = [&] { return ref::sum(ref::cross_entropy(logits, targets, n, kV)) / n; };
  CpuBackend be(2);
  const Tensor lt = ref::to_tensor({n, kV}, logits), tt = ids_tensor({n}, targets);
  Tensor probs = nan_tensor({n, kV}), losses = nan_tensor({n});
  const double total = be.cross_entropy_forward(lt, tt, probs, losses);
  const Vec want = ref::cross_entropy(logits, targets, n, kV);
  check_forward("cross-entropy losses", losses, want);
  check_forward("cross-entropy probs", probs, ref::softmax(logits, n, kV));
  CHECK(std::abs(total - ref::sum(want)) <= ref::kFwdTol * std::abs(ref::sum(want)));
  Tensor dlogits = nan_tensor({n, kV});
  be.cross_entropy_backward(probs, tt, 1.0f / n, dlogits);
  check_grad("cross-entropy dlogits", dlogits, ref::numeric_grad(f, logits));

  SECTION("probabilities may overwrite the logits (as GptHead does)") {
    Tensor inplace = lt.clone();
    Tensor losses2 = nan_tensor({n});
    const double total2 = be.cross_entropy_forward(inplace, tt, inplace, losses2);
    CHECK(total2 == total);
    CHECK(ref::to_vec(losses2) == ref::to_vec(losses));
    CHECK(ref::to_vec(inplace) == ref::to_vec(probs));
  }
}
