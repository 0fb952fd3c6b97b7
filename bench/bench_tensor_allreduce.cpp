// Owns the tensor-group allreduce benchmark: a small allreduce between two detached shard actors, each driven by a request per operation, beside the same allreduce between two plain threads over the same in-process transport (issue 12 part 4: the actors within 2x).
//
//   troupe_bench_tensor_allreduce [--floats 1024] [--iters 2000] [--per-request 1]
//
// Prints one JSON line: {"floats":..., "iters":..., "per_request":..., "raw_us":..., "actor_us":...,
// "ratio":...}, times per allreduce (median of 5 repetitions of `iters` operations, after one warm-up
// repetition). Each request to the actors runs `per_request` allreduces: 1 is the worst case, a message
// round trip per collective; a training step is one request that runs all of the step's collectives
// (a 2-layer GPT at T = 2: 4 per block forward and backward, the embedding's, the head's 3 and the
// clipping norm's, 13).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <caf/all.hpp>

#include "actors/actor_system.h"
#include "net/inproc/inproc_transport.h"
#include "runtime/comm/tensor_parallel_ops.h"

using namespace troupe;
using Clock = std::chrono::steady_clock;
using allreduce_atom = caf::atom_constant<caf::atom("allreduce")>;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The raw exchange: two threads, each running `iters` allreduces back to back on its endpoint.
double raw_us(net::InprocWorld& world, std::size_t floats, int iters) {
  std::vector<std::unique_ptr<comm::Transport>> ends;
  for (int r = 0; r < 2; ++r) ends.push_back(world.transport(r));
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      std::vector<float> buf(floats, 1.0f);
      for (int i = 0; i < iters; ++i) comm::allreduce_sum(comm::TensorGroup{ends[static_cast<std::size_t>(r)].get()}, std::span<float>(buf));
    });
  for (auto& t : threads) t.join();
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count() / iters;
}

struct ShardState {
  std::unique_ptr<comm::Transport> end;
  std::vector<float> buf;
  static inline const char* name = "bench.tensor_shard";
};

// A shard actor as troupe's are (actors/tensor_shard_actor.h): detached, one collective per request.
caf::behavior shard(caf::stateful_actor<ShardState>* self, net::InprocWorld* world, int rank, std::size_t floats) {
  self->state.end = world->transport(rank);
  self->state.buf.assign(floats, 1.0f);
  return {[=](allreduce_atom, int count) {
    for (int i = 0; i < count; ++i)
      comm::allreduce_sum(comm::TensorGroup{self->state.end.get()}, std::span<float>(self->state.buf));
    return true;
  }};
}

// The actor form: iters / per_request times, a request to both shard actors (per_request allreduces
// each) and the wait for both answers.
double actor_us(caf::actor_system& sys, const std::vector<caf::actor>& shards, int iters, int per_request) {
  caf::scoped_actor self(sys);
  const auto start = Clock::now();
  for (int i = 0; i < iters / per_request; ++i) {
    auto a = self->request(shards[0], caf::infinite, allreduce_atom::value, per_request);
    auto b = self->request(shards[1], caf::infinite, allreduce_atom::value, per_request);
    a.receive([](bool) {}, [](caf::error&) { std::abort(); });
    b.receive([](bool) {}, [](caf::error&) { std::abort(); });
  }
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count() / (iters / per_request * per_request);
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t floats = 1024;
  int iters = 2000;
  int per_request = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--floats")) floats = std::stoul(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--iters")) iters = std::stoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--per-request")) per_request = std::max(1, std::stoi(argv[i + 1]));
    else {
      std::fprintf(stderr, "usage: %s [--floats N] [--iters N] [--per-request N]\n", argv[0]);
      return 2;
    }
  }
  net::InprocWorld raw_world(2, std::chrono::seconds(60)), actor_world(2, std::chrono::seconds(60));
  ActorSystem system;
  std::vector<caf::actor> shards;
  for (int r = 0; r < 2; ++r) shards.push_back(system.get().spawn<caf::detached>(shard, &actor_world, r, floats));
  std::vector<double> raw, act;
  for (int rep = 0; rep < 6; ++rep) {  // interleaved, so both forms see the same machine load
    const double r = raw_us(raw_world, floats, iters);
    const double a = actor_us(system.get(), shards, iters, per_request);
    if (rep == 0) continue;  // warm-up
    raw.push_back(r);
    act.push_back(a);
  }
  for (const caf::actor& s : shards) caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
  const double r = median(raw), a = median(act);
  std::printf("{\"floats\":%zu,\"iters\":%d,\"per_request\":%d,\"raw_us\":%.2f,\"actor_us\":%.2f,\"ratio\":%.2f}\n",
              floats, iters, per_request, r, a, a / r);
  return 0;
}
