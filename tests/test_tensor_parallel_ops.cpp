// Owns the tests of the tensor group's communication: f, g, gather and scatter each alone over ranks as threads, and the bytes a GPT block moves per micro-batch against the formula.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <vector>

#include "models/gpt_layers.h"
#include "runtime/comm/ring.h"
#include "runtime/comm/tensor_parallel_ops.h"
#include "runtime/cpu/cpu_backend.h"
#include "tests/rank_threads.h"

using namespace troupe;
using namespace std::chrono_literals;
using troupe::testing::RankGroup;

namespace {

// Rank r's input: distinct values per rank and element, not exactly representable sums.
std::vector<float> input(int rank, std::size_t n) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = 0.1f * static_cast<float>(i + 1) + 0.37f * static_cast<float>(rank + 1);
  return v;
}

// The sum in rank order, as the group promises to add.
std::vector<float> rank_order_sum(int ranks, std::size_t n) {
  std::vector<float> s = input(0, n);
  for (int r = 1; r < ranks; ++r) {
    const std::vector<float> x = input(r, n);
    for (std::size_t i = 0; i < n; ++i) s[i] += x[i];
  }
  return s;
}

void require_no_errors(const std::vector<std::exception_ptr>& errors) {
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Counts the bytes a rank sends (a Transport decorator).
class CountingTransport final : public comm::Transport {
 public:
  explicit CountingTransport(comm::Transport& inner) : inner_(inner) {}
  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  void send(int to, std::uint32_t tag, std::span<const std::byte> data) override {
    sent += data.size();
    inner_.send(to, tag, data);
  }
  void recv(int from, std::uint32_t tag, std::span<std::byte> out) override { inner_.recv(from, tag, out); }
  std::size_t sent = 0;

 private:
  comm::Transport& inner_;
};

}  // namespace

TEST_CASE("tensor ops: f is the identity forward and sums backward, g sums forward, identity backward",
          "[tensor_parallel]") {
  for (int ranks : {1, 2, 3, 4}) {
    INFO("ranks " << ranks);
    const std::size_t n = 37;  // not a multiple of the ranks: uneven chunks
    const std::vector<float> expected = rank_order_sum(ranks, n);
    RankGroup group(TransportKind::inproc, ranks, 5s);
    require_no_errors(group.run([&](comm::Transport& t) {
      const comm::TensorGroup g{&t};
      std::vector<float> x = input(t.rank(), n);
      comm::f_forward(g, x);
      REQUIRE(same_bits(x, input(t.rank(), n)));
      comm::f_backward(g, x);
      REQUIRE(same_bits(x, expected));
      std::vector<float> y = input(t.rank(), n);
      comm::g_forward(g, y);
      REQUIRE(same_bits(y, expected));
      comm::g_backward(g, y);
      REQUIRE(same_bits(y, expected));
    }));
  }
}

TEST_CASE("tensor ops: gather all-gathers rows forward and reduce-scatters backward, scatter the reverse",
          "[tensor_parallel]") {
  for (int ranks : {2, 4}) {
    INFO("ranks " << ranks);
    const std::size_t rows = 8, c = 3, n = rows * c, local_n = n / static_cast<std::size_t>(ranks);
    const std::vector<float> sum = rank_order_sum(ranks, n);
    RankGroup group(TransportKind::inproc, ranks, 5s);
    require_no_errors(group.run([&](comm::Transport& t) {
      const comm::TensorGroup g{&t};
      const std::size_t at = local_n * static_cast<std::size_t>(t.rank());
      // gather forward: every rank's rows in rank order.
      std::vector<float> local(local_n), whole(n);
      for (std::size_t i = 0; i < local_n; ++i) local[i] = static_cast<float>(at + i) * 0.5f;
      comm::gather_forward(g, local, whole);
      for (std::size_t i = 0; i < n; ++i) REQUIRE(whole[i] == static_cast<float>(i) * 0.5f);
      // gather backward: this rank's rows of the sum over ranks.
      std::vector<float> grad = input(t.rank(), n), mine(local_n);
      comm::gather_backward(g, grad, mine);
      REQUIRE(same_bits(mine, std::vector<float>(sum.begin() + static_cast<long>(at),
                                                 sum.begin() + static_cast<long>(at + local_n))));
      // scatter forward = reduce-scatter; backward = all-gather.
      std::vector<float> partial = input(t.rank(), n), summed(local_n);
      comm::scatter_forward(g, partial, summed);
      REQUIRE(same_bits(summed, mine));
      std::vector<float> back(n);
      comm::scatter_backward(g, local, back);
      REQUIRE(same_bits(back, whole));
    }));
  }
}

TEST_CASE("tensor ops: max over the group is exact and the same on every rank", "[tensor_parallel]") {
  RankGroup group(TransportKind::inproc, 3, 5s);
  require_no_errors(group.run([&](comm::Transport& t) {
    std::vector<float> x = {static_cast<float>(t.rank()), -static_cast<float>(t.rank()), 7.0f, 1e-30f * t.rank()};
    comm::allreduce_max(comm::TensorGroup{&t}, x);
    REQUIRE(x == std::vector<float>{2.0f, 0.0f, 7.0f, 2e-30f});
  }));
}

TEST_CASE("tensor ops: bytes per block per micro-batch = 4 allreduces of B*T*C floats, 2(T-1)/T of each, and with "
          "sequence parallelism 6 all-gathers and 4 reduce-scatters, (T-1)/T of each",
          "[tensor_parallel][sequence_parallel]") {
  // A GPT block under tensor parallelism allreduces its [B*T, C] activations twice forward (g after
  // attn.c_proj and mlp.c_proj) and twice backward (f before attn.c_attn and mlp.c_fc). Per rank:
  //   bytes = 4 * 2 (T - 1)/T * 4 B S C.
  // Under sequence parallelism: forward all-gathers before c_attn and c_fc and reduce-scatters after the
  // two c_proj; backward all-gathers the two c_proj's output gradients, reduce-scatters c_attn's and
  // c_fc's input gradients and all-gathers ln_1's and ln_2's outputs again for their weight gradients:
  //   bytes = (6 + 4) (T - 1)/T * 4 B S C.
  const GptShape shape{1, 4, 32, 8, 64};
  const std::int64_t b = 2, s = 8, c = shape.n_embd;
  for (const bool sequence : {false, true})
    for (int tp : {2, 4}) {
      INFO("T = " << tp << (sequence ? " with sequence parallelism" : ""));
      const std::int64_t local_s = sequence ? s / tp : s;
      RankGroup group(TransportKind::inproc, tp, 5s);
      std::vector<std::size_t> sent(static_cast<std::size_t>(tp));
      require_no_errors(group.run([&](comm::Transport& inner) {
        CountingTransport t(inner);
        CpuBackend be(1);
        ParamSet params;
        GptBlock block(params, shape, 0, 1234, comm::TensorGroup{&t, sequence});
        MicroBatch mb;
        mb.row_block = s;
        mb.inputs = Tensor::zeros({b, s}, DType::i32);  // the tokens: how long a sequence is
        Tensor x = Tensor::empty({b, local_s, c});
        for (std::int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = 0.01f * static_cast<float>(i % 97);
        LayerCtx ctx;
        Tensor y = block.forward(be, mb, ctx, x);
        REQUIRE(y.shape() == x.shape());
        Tensor dy = Tensor::full({b, local_s, c}, 0.001f);
        block.backward(be, mb, ctx, dy);
        sent[static_cast<std::size_t>(t.rank())] = t.sent;
      }));
      const std::size_t activation = static_cast<std::size_t>(b * s * c) * sizeof(float);
      const std::size_t formula = (sequence ? 10 : 4 * 2) * static_cast<std::size_t>(tp - 1) * activation /
                                  static_cast<std::size_t>(tp);
      if (sequence)
        REQUIRE(formula == 6 * comm::all_gather_bytes(activation, tp) + 4 * comm::reduce_scatter_bytes(activation, tp));
      else
        REQUIRE(formula == 4 * comm::allreduce_bytes(activation, tp));
      for (std::size_t r = 0; r < sent.size(); ++r) {
        INFO("rank " << r);
        CHECK(sent[r] == formula);
      }
    }
}
