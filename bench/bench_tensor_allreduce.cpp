// Owns the tensor-group allreduce benchmark: a small allreduce between two detached shard actors, driven by requests, beside the same allreduce between two plain threads over the same in-process transport (issue 12 part 4: the actors within 2x), over a sweep of sizes.
//
//   troupe_bench_tensor_allreduce [--bytes 4096,16384,65536,262144] [--per-request 1,13] [--iters 520]
//                                 [--poll-us 50]
//
// Prints one JSON line per size and per-request count: {"bytes":..., "floats":..., "iters":...,
// "per_request":..., "poll_us":..., "raw_us":..., "actor_us":..., "ratio":...}, times per allreduce
// (median of 15 short repetitions, after one warm-up repetition, the two forms interleaved so that both
// see the same machine load; short, so that a burst of other load falls on few of them), then a summary line with the largest ratio. Each request to the actors runs
// `per_request` allreduces: 1 is the worst case, a message round trip per collective; a training step
// is one request that runs all of the step's collectives (a 2-layer GPT at T = 2: 4 per block forward
// and backward, the embedding's, the head's 3 and the clipping norm's, 13). The shard actors answer
// and the requester waits as troupe's do (actors/tensor_shard_actor.cpp, actors/message_poll.h): the
// shard polls its mailbox for --poll-us after answering, the requester for its answers, before either
// sleeps; --poll-us 0 shows the cost of sleeping instead (a wake-up per request on each side).
// Iterations per repetition shrink with the size (iters · 4 KiB / bytes, at least 52).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <caf/all.hpp>

#include "actors/actor_system.h"
#include "actors/message_poll.h"
#include "net/inproc/inproc_transport.h"
#include "runtime/comm/tensor_parallel_ops.h"
#include "runtime/config/run_config.h"

using namespace troupe;
using Clock = std::chrono::steady_clock;
using allreduce_atom = caf::atom_constant<caf::atom("allreduce")>;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::vector<long> parse_list(const char* text) {
  std::vector<long> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) out.push_back(std::stol(item));
  return out;
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
      for (int i = 0; i < iters; ++i)
        comm::allreduce_sum(comm::TensorGroup{ends[static_cast<std::size_t>(r)].get()}, std::span<float>(buf));
    });
  for (auto& t : threads) t.join();
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count() / iters;
}

struct ShardState {
  std::unique_ptr<comm::Transport> end;
  std::vector<float> buf;
  static inline const char* name = "bench.tensor_shard";
};

// A shard actor as troupe's are (actors/tensor_shard_actor.h): detached; answers, then polls for the
// next request.
caf::behavior shard(caf::stateful_actor<ShardState>* self, net::InprocWorld* world, int rank,
                    std::chrono::microseconds poll) {
  self->state.end = world->transport(rank);
  return {[=](allreduce_atom, int floats, int count) {
    self->state.buf.assign(static_cast<std::size_t>(floats), 1.0f);
    for (int i = 0; i < count; ++i)
      comm::allreduce_sum(comm::TensorGroup{self->state.end.get()}, std::span<float>(self->state.buf));
    auto promise = self->make_response_promise<bool>();
    promise.deliver(true);
    poll_for_message(self, poll);
    return promise;
  }};
}

// The actor form: iters / per_request times, a request to both shard actors (per_request allreduces
// each) and the wait for both answers, as TensorParallelTrainer::ask_shards waits.
double actor_us(caf::actor_system& sys, const std::vector<caf::actor>& shards, std::size_t floats, int iters,
                int per_request, std::chrono::microseconds poll) {
  caf::scoped_actor self(sys);
  const auto start = Clock::now();
  for (int i = 0; i < iters / per_request; ++i) {
    auto a = self->request(shards[0], caf::infinite, allreduce_atom::value, static_cast<int>(floats), per_request);
    auto b = self->request(shards[1], caf::infinite, allreduce_atom::value, static_cast<int>(floats), per_request);
    poll_for_replies(self.ptr(), 2, poll);
    a.receive([](bool) {}, [](caf::error&) { std::abort(); });
    b.receive([](bool) {}, [](caf::error&) { std::abort(); });
  }
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count() / (iters / per_request * per_request);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<long> sizes = {4096, 16384, 65536, 262144}, per_requests = {1, 13};
  int iters = 520;
  long poll_us = RunConfig{}.comm.poll_us;  // troupe's default
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--bytes")) sizes = parse_list(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--floats")) sizes = {4 * std::stol(argv[i + 1])};
    else if (!std::strcmp(argv[i], "--iters")) iters = std::stoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--per-request")) per_requests = parse_list(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--poll-us")) poll_us = std::stol(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: %s [--bytes B,B,...] [--per-request N,N,...] [--iters N] [--poll-us N]\n", argv[0]);
      return 2;
    }
  }
  for (long b : sizes)
    if (b < 4 || b % 4) {
      std::fprintf(stderr, "--bytes: %ld is not a positive multiple of 4 (floats)\n", b);
      return 2;
    }
  for (long& p : per_requests) p = std::max(1L, p);
  const std::chrono::microseconds poll(poll_us);
  net::InprocWorld raw_world(2, std::chrono::seconds(60)), actor_world(2, std::chrono::seconds(60));
  ActorSystem system;
  std::vector<caf::actor> shards;
  for (int r = 0; r < 2; ++r) shards.push_back(system.get().spawn<caf::detached>(shard, &actor_world, r, poll));
  double worst = 0.0;
  long worst_bytes = 0, worst_per_request = 0;
  for (long bytes : sizes) {
    const std::size_t floats = static_cast<std::size_t>(bytes / 4);
    const int n = std::max(52, static_cast<int>(static_cast<long>(iters) * 4096 / bytes));
    for (long per_request : per_requests) {
      std::vector<double> raw, act;
      for (int rep = 0; rep < 16; ++rep) {  // interleaved, so both forms see the same machine load
        const double r = raw_us(raw_world, floats, n);
        const double a = actor_us(system.get(), shards, floats, n, static_cast<int>(per_request), poll);
        if (rep == 0) continue;  // warm-up
        raw.push_back(r);
        act.push_back(a);
      }
      const double r = median(raw), a = median(act);
      if (a / r > worst) {
        worst = a / r;
        worst_bytes = bytes;
        worst_per_request = per_request;
      }
      std::printf("{\"bytes\":%ld,\"floats\":%zu,\"iters\":%d,\"per_request\":%ld,\"poll_us\":%ld,\"raw_us\":%.2f,"
                  "\"actor_us\":%.2f,\"ratio\":%.2f}\n",
                  bytes, floats, n, per_request, poll_us, r, a, a / r);
      std::fflush(stdout);
    }
  }
  for (const caf::actor& s : shards) caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
  std::printf("{\"summary\":\"shard actors / raw threads\",\"worst_ratio\":%.2f,\"at_bytes\":%ld,\"per_request\":%ld,"
              "\"target\":2.0}\n",
              worst, worst_bytes, worst_per_request);
  return 0;
}
