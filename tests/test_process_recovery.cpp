// Owns the tests of the pieces a restarted replica process stands on, without processes: the training
// state's byte form (what rank 0 sends it) and the ReformableTransport its groups re-form under.
#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "net/inproc/inproc_transport.h"
#include "runtime/checkpoint/state_bytes.h"
#include "runtime/comm/group_aborted.h"
#include "runtime/comm/reformable_transport.h"
#include "runtime/error.h"

using namespace troupe;
using Catch::Matchers::Contains;

namespace {
TrainingState sample_state() {
  TrainingState s;
  s.step = 42;
  s.params.push_back({"h.0.w", Tensor::from_f32({2, 3}, std::vector<float>{1, -2, 3.5f, 0, 1e-30f, -0.0f})});
  s.params.push_back({"bn.count", Tensor::from_i32({1}, std::vector<std::int32_t>{7})});
  s.optimizer.step = 41;
  ParamState& p = s.optimizer.get_or_create("h.0.w");
  p.step = 40;
  p.tensors.emplace("exp_avg", Tensor::full({2, 3}, 0.25f));
  p.tensors.emplace("exp_avg_sq", Tensor::full({2, 3}, 1e-8f));
  return s;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}
}  // namespace

TEST_CASE("a training state survives its byte form bitwise, and a damaged one is refused by name",
          "[checkpoint][restart]") {
  const TrainingState s = sample_state();
  const std::vector<std::byte> bytes = state_to_bytes(s);
  const TrainingState back = state_from_bytes(bytes, "rank 0");
  CHECK(back.step == 42);
  REQUIRE(back.params.size() == 2);
  for (std::size_t i = 0; i < 2; ++i) {
    CHECK(back.params[i].first == s.params[i].first);
    CHECK(same_bits(back.params[i].second, s.params[i].second));
  }
  CHECK(back.optimizer.step == 41);
  REQUIRE(back.optimizer.find("h.0.w") != nullptr);
  CHECK(back.optimizer.find("h.0.w")->step == 40);
  CHECK(same_bits(back.optimizer.tensor("h.0.w", "exp_avg"), s.optimizer.tensor("h.0.w", "exp_avg")));
  CHECK(same_bits(back.optimizer.tensor("h.0.w", "exp_avg_sq"), s.optimizer.tensor("h.0.w", "exp_avg_sq")));
  // Every cut short, and a foreign buffer, is an error naming the sender; never a read past the end.
  for (std::size_t n = 0; n < bytes.size(); n += 7)
    CHECK_THROWS_WITH(state_from_bytes(std::span(bytes).first(n), "rank 0"), Contains("rank 0"));
  std::vector<std::byte> longer = bytes;
  longer.push_back(std::byte{0});
  CHECK_THROWS_WITH(state_from_bytes(longer, "rank 0"), Contains("1 bytes after its end"));
  std::vector<std::byte> foreign = bytes;
  foreign[0] = std::byte{'X'};
  CHECK_THROWS_WITH(state_from_bytes(foreign, "rank 0"), Contains("is not a training state"));
}

TEST_CASE("a reformable transport turns a failed group into an abandoned step and goes on over new connections",
          "[collectives][restart]") {
  const auto timeout = std::chrono::milliseconds(2000);
  // Both groups outlive the transports that use them.
  auto first = std::make_unique<net::InprocWorld>(2, timeout);
  auto second = std::make_unique<net::InprocWorld>(2, timeout);
  net::InprocWorld* world = first.get();
  comm::ReformableTransport a(world->transport(0), [world] { world->kill(0); });
  comm::ReformableTransport b(world->transport(1), [world] { world->kill(1); });
  const float x = 1.5f;
  float y = 0.0f;
  a.send(1, 7, std::as_bytes(std::span(&x, 1)));
  b.recv(0, 7, std::as_writable_bytes(std::span(&y, 1)));
  CHECK(y == 1.5f);
  CHECK_FALSE(a.interrupted());
  // Rank 0 ends its connections (its process saw a peer die): rank 1's next call is an abandoned step, not
  // its own death, and both know the group was interrupted.
  a.break_group();
  CHECK(a.interrupted());
  CHECK_THROWS_AS(b.recv(0, 7, std::as_writable_bytes(std::span(&y, 1))), comm::GroupAborted);
  CHECK(b.interrupted());
  CHECK_THAT(b.first_failure(), Contains("rank 0"));
  // The group formed again: the same objects, new connections, the interruption forgotten.
  net::InprocWorld* again = second.get();
  a.replace(again->transport(0), [again] { again->kill(0); });
  b.replace(again->transport(1), [again] { again->kill(1); });
  CHECK_FALSE(a.interrupted());
  CHECK_FALSE(b.interrupted());
  const float z = -3.0f;
  b.send(0, 9, std::as_bytes(std::span(&z, 1)));
  a.recv(1, 9, std::as_writable_bytes(std::span(&y, 1)));
  CHECK(y == -3.0f);
  // A group of another shape is a bug in the caller.
  net::InprocWorld three(3, timeout);
  CHECK_THROWS(a.replace(three.transport(0), {}));
}
