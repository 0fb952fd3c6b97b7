// [cuda] Every CudaBackend op against CpuBackend on fresh random inputs, with poisoned outputs and per-op tolerances.
//
// Tolerances (max |gpu - cpu| / max |cpu|): 1e-5 for f32 products, elementwise ops, softmax, LayerNorm
// forward, embeddings, cross-entropy (sums in another order, same rounding per op); 1e-4 for LayerNorm
// and attention backward (two chained reductions of cancelling terms); 1e-2 for bf16 products.
#include "tests/cuda_oracle.h"

using namespace troupe;
using namespace troupe::cuda_test;

namespace {
constexpr double kF32 = 1e-5, kChained = 1e-4, kBf16 = 1e-2;
const float kNaN = std::numeric_limits<float>::quiet_NaN();
}  // namespace

TEST_CASE("matmul: every transpose combination, alpha and beta", "[cuda]") {
  Oracle o;
  const std::int64_t m = 37, n = 53, k = 29;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      INFO("trans_a " << ta << " trans_b " << tb);
      Tensor a = o.random(ta ? Shape{k, m} : Shape{m, k}), b = o.random(tb ? Shape{n, k} : Shape{k, n});
      Tensor c = o.random({m, n});
      Tensor dc = o.up(c);
      o.cpu.matmul(a, ta, b, tb, c, 0.75f, 0.5f);
      o.gpu.matmul(o.up(a), ta, o.up(b), tb, dc, 0.75f, 0.5f);
      CHECK_CLOSE(o, dc, c, kF32);
    }
}

TEST_CASE("linear forward and backward (f32): y, dx, accumulated dw and dbias", "[cuda]") {
  Oracle o;
  const std::int64_t n = 45, in = 40, out = 72;
  Tensor x = o.random({n, in}), w = o.random({out, in}), bias = o.random({out}), dy = o.random({n, out});
  auto [y, dy_] = o.poisoned({n, out});
  o.cpu.linear_forward(x, w, bias, y, 0);
  o.gpu.linear_forward(o.up(x), o.up(w), o.up(bias), dy_, 0);
  CHECK_CLOSE(o, dy_, y, kF32);

  Tensor dw = o.random({out, in}), db = o.random({out});
  Tensor ddw = o.up(dw), ddb = o.up(db);
  auto [dx, ddx] = o.poisoned({n, in});
  o.cpu.linear_backward(dy, x, w, dx, dw, db, 0);
  o.gpu.linear_backward(o.up(dy), o.up(x), o.up(w), ddx, ddw, ddb, 0);
  CHECK_CLOSE(o, ddx, dx, kF32);
  CHECK_CLOSE(o, ddw, dw, kF32);
  CHECK_CLOSE(o, ddb, db, kF32);
}

TEST_CASE("linear with bf16 operands: f32 accumulation and outputs, within 1e-2 of the f32 CPU op", "[cuda]") {
  Oracle o;
  const std::int64_t n = 64, in = 96, out = 80;
  Tensor x = o.random({n, in}), w = o.random({out, in}), bias = o.random({out}), dy = o.random({n, out});
  auto to16 = [&](const Tensor& h) {
    Tensor d = o.gpu.empty(h.shape(), DType::bf16);
    o.gpu.cast(o.up(h), d);
    return d;
  };
  auto [y, dy_] = o.poisoned({n, out});
  o.cpu.linear_forward(x, w, bias, y, 0);
  o.gpu.linear_forward(to16(x), to16(w), o.up(bias), dy_, 0);
  CHECK_CLOSE(o, dy_, y, kBf16);

  Tensor dw = o.random({out, in}), db = o.random({out});
  Tensor ddw = o.up(dw), ddb = o.up(db);
  auto [dx, ddx] = o.poisoned({n, in});
  o.cpu.linear_backward(dy, x, w, dx, dw, db, 0);
  o.gpu.linear_backward(to16(dy), to16(x), to16(w), ddx, ddw, ddb, 0);
  CHECK_CLOSE(o, ddx, dx, kBf16);
  CHECK_CLOSE(o, ddw, dw, kBf16);
  CHECK_CLOSE(o, ddb, db, kBf16);
}

TEST_CASE("casts between f32 and bf16 round to nearest even, as the host conversion", "[cuda]") {
  Oracle o;
  Tensor x = o.random({1000}, -100.0f, 100.0f);
  Tensor d16 = o.gpu.empty({1000}, DType::bf16);
  o.gpu.cast(o.up(x), d16);
  const Tensor h16 = o.down(d16);
  const Tensor want = x.to(DType::bf16);
  for (std::int64_t i = 0; i < 1000; ++i) REQUIRE(h16.bf16()[i] == want.bf16()[i]);
  Tensor back = o.gpu.empty({1000});
  o.gpu.cast(d16, back);
  CHECK_CLOSE(o, back, want.to(DType::f32), 0.0);
}

TEST_CASE("GELU, ReLU and additions, forward and backward", "[cuda]") {
  Oracle o;
  const Shape s{33, 65};
  Tensor x = o.random(s, -4.0f, 4.0f), b = o.random(s), dy = o.random(s);
  {
    auto [y, d] = o.poisoned(s);
    o.cpu.gelu_forward(x, y);
    o.gpu.gelu_forward(o.up(x), d);
    CHECK_CLOSE(o, d, y, kF32);
    auto [dx, ddx] = o.poisoned(s);
    o.cpu.gelu_backward(x, dy, dx);
    o.gpu.gelu_backward(o.up(x), o.up(dy), ddx);
    CHECK_CLOSE(o, ddx, dx, kF32);
  }
  {
    auto [y, d] = o.poisoned(s);
    o.cpu.relu_forward(x, y);
    o.gpu.relu_forward(o.up(x), d);
    CHECK_CLOSE(o, d, y, 0.0);
    auto [dx, ddx] = o.poisoned(s);
    o.cpu.relu_backward(y, dy, dx);
    o.gpu.relu_backward(d, o.up(dy), ddx);
    CHECK_CLOSE(o, ddx, dx, 0.0);
  }
  {
    auto [sum, d] = o.poisoned(s);
    o.cpu.add(x, b, sum);
    o.gpu.add(o.up(x), o.up(b), d);
    CHECK_CLOSE(o, d, sum, 0.0);  // one rounding each: identical
    Tensor acc = x.clone(), dacc = o.up(x);
    o.cpu.add_inplace(acc, b);
    o.gpu.add_inplace(dacc, o.up(b));
    CHECK_CLOSE(o, dacc, acc, 0.0);
  }
}

TEST_CASE("softmax and LayerNorm, forward and backward", "[cuda]") {
  Oracle o;
  const std::int64_t rows = 29, c = 300;  // c above one block's 256 threads: the strided loops run
  Tensor x = o.random({rows, c}, -3.0f, 3.0f), dy = o.random({rows, c});
  auto [y, d] = o.poisoned({rows, c});
  o.cpu.softmax_forward(x, y);
  o.gpu.softmax_forward(o.up(x), d);
  CHECK_CLOSE(o, d, y, kF32);
  auto [dx, ddx] = o.poisoned({rows, c});
  o.cpu.softmax_backward(y, dy, dx);
  o.gpu.softmax_backward(d, o.up(dy), ddx);
  CHECK_CLOSE(o, ddx, dx, kF32);

  Tensor w = o.random({c}), b = o.random({c});
  auto [ly, dly] = o.poisoned({rows, c});
  auto [mean, dmean] = o.poisoned({rows});
  auto [rstd, drstd] = o.poisoned({rows});
  o.cpu.layernorm_forward(x, w, b, 1e-5f, ly, mean, rstd);
  o.gpu.layernorm_forward(o.up(x), o.up(w), o.up(b), 1e-5f, dly, dmean, drstd);
  CHECK_CLOSE(o, dly, ly, kF32);
  CHECK_CLOSE(o, dmean, mean, kF32);
  CHECK_CLOSE(o, drstd, rstd, kF32);
  Tensor dw = o.random({c}), db = o.random({c});
  Tensor ddw = o.up(dw), ddb = o.up(db);
  auto [lx, dlx] = o.poisoned({rows, c});
  o.cpu.layernorm_backward(dy, x, w, mean, rstd, lx, dw, db);
  o.gpu.layernorm_backward(o.up(dy), o.up(x), o.up(w), dmean, drstd, dlx, ddw, ddb);
  CHECK_CLOSE(o, dlx, lx, kChained);
  CHECK_CLOSE(o, ddw, dw, kChained);
  CHECK_CLOSE(o, ddb, db, kF32);
}

TEST_CASE("embedding forward and backward with repeated ids, and a bad id is an input error", "[cuda]") {
  Oracle o;
  const std::int64_t n = 200, c = 48;
  const int vocab = 17;  // far fewer ids than rows: every row of the table is hit several times
  Tensor ids = o.random_ids(n, vocab), table = o.random({vocab, c}), dy = o.random({n, c});
  auto [y, d] = o.poisoned({n, c});
  o.cpu.embedding_forward(ids, table, y);
  o.gpu.embedding_forward(ids, o.up(table), d);  // host ids: the backend uploads them
  CHECK_CLOSE(o, d, y, 0.0);
  Tensor dt = o.random({vocab, c}), ddt = o.up(dt);
  o.cpu.embedding_backward(ids, dy, dt);
  o.gpu.embedding_backward(o.up(ids), o.up(dy), ddt);
  CHECK_CLOSE(o, ddt, dt, 0.0);  // rows added in the CPU's order: identical

  Tensor bad = ids.clone();
  bad.i32()[7] = vocab;
  o.gpu.embedding_forward(bad, o.up(table), d);
  try {
    o.gpu.synchronize();
    FAIL("expected an input error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kInput);
    CHECK_THAT(e.what(), Catch::Contains("position 7"));
  }
  CHECK_NOTHROW(o.gpu.synchronize());  // reported once
}

TEST_CASE("causal attention forward and backward", "[cuda]") {
  Oracle o;
  struct Case {
    std::int64_t b, t, c;
    int heads;
  };
  for (const Case k : {Case{2, 13, 24, 3}, Case{3, 64, 64, 4}, Case{1, 300, 32, 2}}) {
    INFO("B " << k.b << " T " << k.t << " C " << k.c << " heads " << k.heads);
    Tensor qkv = o.random({k.b, k.t, 3 * k.c}), dout = o.random({k.b, k.t, k.c});
    auto [out, dout_] = o.poisoned({k.b, k.t, k.c});
    auto [probs, dprobs] = o.poisoned({k.b, k.heads, k.t, k.t});
    const Tensor dqkv_in = o.up(qkv);
    o.cpu.attention_forward(qkv, k.heads, out, probs);
    o.gpu.attention_forward(dqkv_in, k.heads, dout_, dprobs);
    CHECK_CLOSE(o, dprobs, probs, kF32);
    CHECK_CLOSE(o, dout_, out, kF32);
    auto [dqkv, ddqkv] = o.poisoned({k.b, k.t, 3 * k.c});
    o.cpu.attention_backward(dout, qkv, probs, k.heads, dqkv);
    o.gpu.attention_backward(o.up(dout), dqkv_in, dprobs, k.heads, ddqkv);
    CHECK_CLOSE(o, ddqkv, dqkv, kChained);
  }
}

TEST_CASE("cross-entropy forward (in place over the logits) and backward", "[cuda]") {
  Oracle o;
  const std::int64_t rows = 50, v = 300;
  Tensor logits = o.random({rows, v}, -5.0f, 5.0f), targets = o.random_ids(rows, static_cast<int>(v));
  Tensor dlogits_in = o.up(logits);
  auto [losses, dlosses] = o.poisoned({rows});
  Tensor probs = logits.clone();
  const double want = o.cpu.cross_entropy_forward(probs, targets, probs, losses);
  const double got = o.gpu.cross_entropy_forward(dlogits_in, targets, dlogits_in, dlosses);
  CHECK(got == Approx(want).epsilon(kF32));
  CHECK_CLOSE(o, dlosses, losses, kF32);
  CHECK_CLOSE(o, dlogits_in, probs, kF32);
  auto [g, dg] = o.poisoned({rows, v});
  o.cpu.cross_entropy_backward(probs, targets, 0.02f, g);
  o.gpu.cross_entropy_backward(dlogits_in, o.up(targets), 0.02f, dg);
  CHECK_CLOSE(o, dg, g, kF32);
}

TEST_CASE("deterministic mode is CPU-only: the CUDA backend refuses it with a config error", "[cuda]") {
  CudaBackend gpu;
  CHECK_NOTHROW(gpu.set_deterministic(false));
  try {
    gpu.set_deterministic(true);
    FAIL("expected a config error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kConfig);
    CHECK_THAT(e.what(), Catch::Contains("CPU-only"));
  }
  CHECK_THROWS_AS(gpu.exact_grad(gpu.empty({4})), Error);
}

TEST_CASE("device memory is recycled: steady-state steps allocate nothing new", "[cuda]") {
  CudaBackend gpu;
  for (int i = 0; i < 3; ++i) {
    Tensor a = gpu.empty({1000, 100});
    Tensor b = gpu.empty({77});
  }
  const auto s = gpu.memory_stats();
  CHECK(s.reuses >= 4);
  CHECK(s.bytes_cached >= 400000);
  Tensor far = gpu.empty({3});
  CHECK(far.device() == Device::cuda(0));
  CHECK_THROWS_AS(far.to_vector(), InvariantError);  // device memory is not readable from the host
}

TEST_CASE("transfers: host to device to host is exact, device to device copies, dtype and shape are checked", "[cuda]") {
  Oracle o;
  Tensor x = o.random({123, 7});
  const Tensor d = o.up(x);
  CHECK(d.device() == Device::cuda(0));
  CHECK(o.down(d).to_vector() == x.to_vector());
  Tensor d2 = o.gpu.empty({123, 7});
  o.gpu.fill(d2, kNaN);
  o.gpu.copy(d2, d);
  CHECK(o.down(d2).to_vector() == x.to_vector());
  Tensor host = Tensor::full({123, 7}, kNaN);
  o.gpu.copy(host, d2);  // device to host through the same call
  o.gpu.synchronize();
  CHECK(host.to_vector() == x.to_vector());
  CHECK_THROWS_AS(o.gpu.copy(o.gpu.empty({7, 123}), d), InvariantError);
  const Tensor slice = d.slice(100, 123);  // views of device tensors address device memory
  CHECK(o.down(slice).to_vector() == x.slice(100, 123).to_vector());
}

TEST_CASE("a device that does not exist is a config error naming the devices that do", "[cuda]") {
  try {
    CudaBackend gpu(CudaBackendOptions{99, false});
    FAIL("expected a config error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kConfig);
    CHECK_THAT(e.what(), Catch::Contains("cuda:99") && Catch::Contains("troupe devices lists them"));
  }
}

TEST_CASE("two backends (two actors' streams): an event orders a copy after the producer's kernels", "[cuda]") {
  CudaBackend producer, consumer;
  const std::int64_t n = std::int64_t{1} << 24;  // long enough that an unordered copy would see old values
  Tensor a = producer.empty({n});
  producer.fill(a, 1.0f);
  producer.synchronize();
  for (int i = 0; i < 8; ++i) producer.scale(a, 2.0f);  // 256 once all have run
  const CudaBackend::Event done = producer.record();
  Tensor b = consumer.empty({n});
  consumer.wait(done);
  consumer.copy(b, a);
  const Tensor host = consumer.download(b);
  CHECK(host.f32()[0] == 256.0f);
  CHECK(host.f32()[n - 1] == 256.0f);
}
