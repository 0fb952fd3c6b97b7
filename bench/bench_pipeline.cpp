// Pipeline runtime overhead and per-hop latency of troupe's stage actors.
//
// Overhead: p stages whose every forward and backward sleeps a fixed time (the model is tiny, so the
// sleep is the cost and no CPU is needed), m micro-batches, each schedule; the measured step time
// divided by the simulator's ideal makespan for the same costs. 1.00 means the actors add nothing.
// Every Forward and Backward takes exactly the cost, the tiny model's own compute included
// (StageWorker::set_compute_delay), so what is left over is the runtime's: hops, coordination, the
// optimizer step.
// Latency: two detached actors bounce a small activation message; half the round trip is one hop.
// Usage: troupe_bench_pipeline [cost_us (2000)] [stages (one per core, 2..4)]. Prints one JSON line per
// measurement.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "actors/actor_pipeline.h"
#include "actors/message_poll.h"
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

// Two detached actors, as two neighbouring stages are, bounce a small activation; each polls its
// mailbox for `poll` after sending, as a stage actor does mid-step (actors/message_poll.h). Half of a
// round trip is one hop. poll = 0 measures CAF's own wake-up of a sleeping detached actor.
void hop_latency(int round_trips, std::chrono::microseconds poll) {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto pong = sys.spawn<caf::detached>([poll](caf::event_based_actor* self) -> caf::behavior {
    return {[=](const StageMessage& m, const caf::actor& back) {
      self->send(back, m);
      poll_for_message(self, poll);
    }};
  });
  caf::scoped_actor main_thread{sys};
  using Clock = std::chrono::steady_clock;
  auto ping = sys.spawn<caf::detached>([=, done = caf::actor(main_thread)](caf::event_based_actor* self) -> caf::behavior {
    auto stamps = std::make_shared<std::vector<Clock::time_point>>();
    return {[=](const StageMessage& m) {
      stamps->push_back(Clock::now());
      if (static_cast<int>(stamps->size()) > round_trips) {
        std::vector<double> rtts;
        for (std::size_t i = 1; i < stamps->size(); ++i)
          rtts.push_back(std::chrono::duration<double, std::micro>((*stamps)[i] - (*stamps)[i - 1]).count());
        self->send(done, rtts);
        return;
      }
      self->send(pong, m, caf::actor(self));
      poll_for_message(self, poll);
    }};
  });
  main_thread->send(ping, StageMessage{StageMessage::Kind::activation, 0, 0, Tensor::zeros({4, 16})});
  std::vector<double> rtts;
  main_thread->receive([&](std::vector<double>& v) { rtts = std::move(v); });
  std::sort(rtts.begin(), rtts.end());
  std::printf("{\"bench\":\"hop_latency\",\"poll_us\":%lld,\"round_trips\":%d,\"median_hop_us\":%.2f,"
              "\"p10_hop_us\":%.2f,\"p90_hop_us\":%.2f}\n",
              static_cast<long long>(poll.count()), round_trips, rtts[rtts.size() / 2] / 2, rtts[rtts.size() / 10] / 2,
              rtts[rtts.size() * 9 / 10] / 2);
  std::fflush(stdout);
  main_thread->send_exit(ping, caf::exit_reason::user_shutdown);
  main_thread->send_exit(pong, caf::exit_reason::user_shutdown);
}
}  // namespace

int main(int argc, char** argv) {
  // One stage thread per core, at most 4: with more stage threads than cores, every Forward's final
  // spin (set_compute_delay) waits for a core, and the figure measures the OS, not the actors.
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int p = argc > 2 ? std::atoi(argv[2]) : std::clamp(cores, 2, 4), m = 16;
  const auto cost = std::chrono::microseconds(argc > 1 ? std::atoi(argv[1]) : 2000);
  for (const char* schedule : {"gpipe", "1f1b"}) overhead(schedule, p, m, 1, cost, 11);
  overhead("interleaved", p, m, 2, cost, 11);
  hop_latency(2000, std::chrono::microseconds(RunConfig{}.comm.poll_us));  // as the stage actors run
  hop_latency(2000, std::chrono::microseconds(0));                        // no polling: CAF's wake-up
  return 0;
}
