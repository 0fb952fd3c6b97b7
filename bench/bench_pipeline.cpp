// Pipeline runtime overhead and per-hop latency of troupe's stage actors.
//
// Overhead: p stages whose every forward and backward sleeps a fixed time (the model is tiny, so the
// sleep is the cost and no CPU is needed), m micro-batches, each schedule; the measured step time
// divided by the simulator's ideal makespan for the same costs. 1.00 means the actors add nothing.
// Latency: two actors bounce a small activation message; half the round trip is one hop.
// Prints one JSON line per measurement.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "actors/actor_pipeline.h"
#include "actors/protocol.h"
#include "runtime/config/config_loader.h"
#include "runtime/schedule/comm_pass.h"
#include "runtime/schedule/generators.h"
#include "runtime/schedule/simulator.h"

using namespace troupe;

namespace {
double overhead(const char* schedule, int p, int m, int v, std::chrono::microseconds cost, int steps) {
  RunConfig config = load_config(std::nullopt, {"model.n_layer=" + std::to_string(2 * p * v), "model.n_embd=8",
                                                "model.n_head=1", "model.block_size=4", "train.batch_size=" + std::to_string(m),
                                                "train.threads=" + std::to_string(p)});
  ActorPipeline pipe(config, {p, v, m, *parse_choice<ScheduleKind>(schedule), ""});
  for (int s = 0; s < p; ++s) pipe.stage(s).set_compute_delay(cost);
  pipe.train_step(0);  // warm-up
  std::vector<double> times;
  for (int s = 1; s <= steps; ++s) times.push_back(pipe.train_step(s).seconds);
  std::sort(times.begin(), times.end());
  const double measured = times[times.size() / 2];
  pipeline::Costs unit{1, 1, 0, 0, 0};
  const auto sim = pipeline::simulate(pipeline::add_communication(pipeline::make_schedule(schedule, p, m, v), p, v), p, v, unit);
  const double ideal = sim.makespan * std::chrono::duration<double>(cost).count();
  std::printf("{\"bench\":\"pipeline_overhead\",\"schedule\":\"%s\",\"p\":%d,\"m\":%d,\"v\":%d,\"cost_us\":%lld,"
              "\"ideal_ms\":%.3f,\"measured_ms\":%.3f,\"ratio\":%.3f}\n",
              schedule, p, m, v, static_cast<long long>(cost.count()), ideal * 1e3, measured * 1e3, measured / ideal);
  std::fflush(stdout);
  return measured / ideal;
}

void hop_latency(int round_trips) {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto echo = sys.spawn<caf::detached>([](caf::event_based_actor* self) -> caf::behavior {
    return {[=](const StageMessage& m) { return m; }};
  });
  caf::scoped_actor self{sys};
  StageMessage msg{StageMessage::Kind::activation, 0, 0, Tensor::zeros({4, 16})};
  std::vector<double> rtts;
  for (int i = 0; i < round_trips; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    self->request(echo, caf::infinite, msg).receive([](const StageMessage&) {}, [](caf::error&) {});
    rtts.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(rtts.begin(), rtts.end());
  std::printf("{\"bench\":\"hop_latency\",\"round_trips\":%d,\"median_hop_us\":%.2f,\"p10_hop_us\":%.2f}\n", round_trips,
              rtts[rtts.size() / 2] / 2, rtts[rtts.size() / 10] / 2);
  self->send_exit(echo, caf::exit_reason::user_shutdown);
}
}  // namespace

int main(int argc, char** argv) {
  const int p = 4, m = 16;
  const auto cost = std::chrono::microseconds(argc > 1 ? std::atoi(argv[1]) : 2000);
  for (const char* schedule : {"gpipe", "1f1b"}) overhead(schedule, p, m, 1, cost, 5);
  overhead("interleaved", p, m, 2, cost, 5);
  hop_latency(2000);
  return 0;
}
