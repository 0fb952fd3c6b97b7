// bench/chaos: N trials of a random fault (kind x place x step) injected with fault.inject into a
// deterministic run, each compared bitwise with the clean run of its layout; prints trials finished,
// trials bitwise equal, the restart and recovery times (median, max), the time lost to the fault (the
// faulty step's wall time less the clean run's same step, measured in the same benchmark run; for
// process layouts the whole run's), each failure not survived with the command that reproduces it, and
// the step-boundary copy's cost.
//
//   troupe_bench_chaos [--trials N] [--seed S] [--steps K] [--model small|default] [--layouts a,b,...]
//                      [--troupe PATH]
//
// Layouts: 1f1b, gpipe, interleaved (pipelines of 2 stages run by actors, 4 micro-batches; a stage's kill
// or throw strikes as the step begins, at its first backward, or mid-step before a random micro-batch's
// forward or backward), dp and dp-alltoall (2 replicas
// x 2 stages, replicas as threads, ring or all-to-all gradient exchange; the fault lands on a random
// replica), dp-zero (dp with ZeRO-1; not drawn unless named), and
// dp-procs, dp-procs-alltoall (replicas as processes over tcp: 3 x 1 stage ring, 2 x 2 stages all-to-all;
// not drawn unless named), whose faults also kill or stall a whole rank process (restarted by rank 0);
// and tp (2 tensor shards, each a tensor-shard actor), dp-tp (2 replicas x 2 shards) and tp-pp (2 shards x 2
// stages x 2 micro-batches, each shard of a stage a stage actor), not drawn unless named, whose faults kill
// or throw in one shard (and, under tp-pp, in a stage or optimizer-state actor of shard 0); tp-procs (2 tensor
// shards as processes over tcp; not drawn unless named), whose faults kill, stall or throw in a shard's process
// (restarted by rank 0) or kill or throw in rank 0's shard actor (restarted in place).
// Parameter servers: ps, ps-mlp, ps-deepfm (the small GPT, or an MLP, with 2 worker threads x 2 shards; DeepFM
// with 3; fault: a worker's step throws before its push, and the worker actor is restarted, or a shard's update
// throws, and the shard is restarted from its step-boundary snapshot) and ps-procs, ps-mlp-procs (3 worker
// processes over tcp x 2 shards in rank 0; faults: a worker process killed or stalled, or a worker's step
// throws: worker 0's actor is restarted in rank 0, a worker process dies of it and is restarted), and
// ps-deepfm-procs (DeepFM on a small click log, 3 worker processes x 2 shards; a worker process killed or
// stalled); none drawn unless named. Shards beside worker processes are not restarted yet, so no fault hits them.
// Process layouts run the troupe program (--troupe, default: ../troupe beside this program) as a user would.
// Stalls are found by heartbeats: the table gives, for them, the silence before rank 0 found the process
// (detection) apart from the restart's own times, which start when it was found. A process layout's restarts
// are those rank 0's report lists: its own, the rank processes', and the actors restarted inside other rank
// processes, which those processes report to rank 0 (runtime/supervision/forwarded_restarts.h).
// Exit status: 0 when every trial finished bitwise equal, 1 otherwise.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "actors/actor_pipeline.h"
#include "actors/data_parallel.h"
#include "actors/runner.h"
#include "runtime/config/config_loader.h"
#include "runtime/error.h"
#include "runtime/supervision/fault_plan.h"

using namespace troupe;

namespace {
struct Options {
  int trials = 100;
  unsigned seed = 1;
  int steps = 6;
  std::string model = "small";
  std::vector<std::string> layouts = {"1f1b", "gpipe", "interleaved", "dp", "dp-alltoall"};
  std::string troupe;  // the troupe program, for layouts of processes
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, sep);)
    if (!part.empty()) out.push_back(part);
  return out;
}

std::vector<std::string> layout_sets(const std::string& layout) {
  if (layout == "1f1b") return {"parallel.pipeline=2", "parallel.microbatches=4"};
  if (layout == "gpipe") return {"parallel.pipeline=2", "parallel.microbatches=4", "parallel.schedule=gpipe"};
  if (layout == "interleaved")
    return {"parallel.pipeline=2", "parallel.microbatches=4", "parallel.schedule=interleaved",
            "parallel.virtual_stages=2"};
  if (layout == "dp") return {"parallel.data=2", "parallel.pipeline=2", "parallel.microbatches=2"};
  if (layout == "dp-alltoall")
    return {"parallel.data=2", "parallel.pipeline=2", "parallel.microbatches=2", "parallel.gradient_exchange=alltoall"};
  if (layout == "dp-zero") return {"parallel.data=2", "parallel.pipeline=2", "parallel.microbatches=2", "parallel.zero=1"};
  // Heartbeats find a stalled rank within comm.timeout_s / 2 (base_sets: longer for the default model, whose
  // steps take seconds on a loaded machine); the system picks free rendezvous ports.
  if (layout == "dp-procs") return {"parallel.data=3", "train.batch_size=12", "comm.transport=tcp", "comm.address=127.0.0.1:0"};
  if (layout == "dp-procs-alltoall")
    return {"parallel.data=2", "parallel.pipeline=2", "parallel.microbatches=2", "parallel.gradient_exchange=alltoall",
            "comm.transport=tcp", "comm.address=127.0.0.1:0"};
  if (layout == "tp") return {"parallel.tensor=2"};
  if (layout == "tp-procs")  // 2 tensor shards as processes over tcp
    return {"parallel.tensor=2", "comm.transport=tcp", "comm.address=127.0.0.1:0"};
  if (layout == "dp-tp") return {"parallel.data=2", "parallel.tensor=2"};
  if (layout == "tp-pp") return {"parallel.tensor=2", "parallel.pipeline=2", "parallel.microbatches=2"};
  // Parameter servers (sync, so deterministic): 2 shards, workers as threads or (procs) processes over tcp.
  if (layout == "ps") return {"parallel.gradient_exchange=ps", "parallel.data=2", "ps.shards=2"};
  if (layout == "ps-mlp")
    return {"parallel.gradient_exchange=ps", "parallel.data=2", "ps.shards=2", "model.kind=mlp", "model.mlp_hidden=64"};
  if (layout == "ps-procs")
    return {"parallel.gradient_exchange=ps", "parallel.data=3", "ps.shards=2", "train.batch_size=12",
            "comm.transport=tcp", "comm.address=127.0.0.1:0"};
  if (layout == "ps-mlp-procs")
    return {"parallel.gradient_exchange=ps", "parallel.data=3", "ps.shards=2", "train.batch_size=12", "model.kind=mlp",
            "model.mlp_hidden=64", "comm.transport=tcp", "comm.address=127.0.0.1:0"};
  if (layout == "ps-deepfm")  // the click-log recommender, 3 worker threads: its tables sharded by rows
    return {"model.kind=deepfm", "parallel.gradient_exchange=ps", "parallel.data=3", "ps.shards=2",
            "model.max_cardinality=10000", "model.hashed_rows=4096", "data.test_samples=1024", "train.batch_size=96"};
  if (layout == "ps-deepfm-procs")  // the click-log recommender: its tables sharded by rows
    return {"model.kind=deepfm", "parallel.gradient_exchange=ps", "parallel.data=3", "ps.shards=2",
            "model.max_cardinality=10000", "model.hashed_rows=4096", "data.test_samples=1024", "train.batch_size=96",
            "comm.transport=tcp", "comm.address=127.0.0.1:0"};
  throw Error(ErrorKind::kUsage, "unknown layout '" + layout +
                                     "' (1f1b, gpipe, interleaved, dp, dp-alltoall, dp-zero, dp-procs, dp-procs-alltoall, "
                                     "tp, dp-tp, tp-pp, tp-procs, ps, ps-mlp, ps-deepfm, ps-procs, ps-mlp-procs, ps-deepfm-procs)");
}

bool tensor(const std::string& layout) { return layout == "tp" || layout == "dp-tp" || layout == "tp-pp"; }
bool tensor_processes(const std::string& layout) { return layout == "tp-procs"; }

bool parameter_servers(const std::string& layout) { return layout.rfind("ps", 0) == 0; }
int ps_workers(const std::string& layout) {
  return layout.find("procs") != std::string::npos || layout == "ps-deepfm" ? 3 : 2;
}

bool processes(const std::string& layout) { return layout.find("procs") != std::string::npos; }
int replicas_of(const std::string& layout) { return layout == "dp-procs" ? 3 : layout.rfind("dp", 0) == 0 ? 2 : 1; }

std::vector<std::string> base_sets(const Options& o) {
  std::vector<std::string> sets = {"train.deterministic=true", "train.eval_every=0", "train.threads=2",
                                   "train.steps=" + std::to_string(o.steps)};
  if (o.model == "small")
    for (const char* s : {"model.n_layer=4", "model.n_embd=32", "model.n_head=2", "model.block_size=16",
                          "train.batch_size=8"})
      sets.push_back(s);
  else if (o.model != "default")
    throw Error(ErrorKind::kUsage, "unknown model '" + o.model + "' (small: a 4-layer GPT of width 32; default)");
  return sets;
}

// A trial's settings: the model's, then the layout's; process layouts wait longer for the default model.
std::vector<std::string> sets_for(const Options& o, const std::string& layout) {
  std::vector<std::string> sets = base_sets(o);
  for (const std::string& s : layout_sets(layout)) sets.push_back(s);
  if (processes(layout)) sets.push_back(o.model == "small" ? "comm.timeout_s=4" : "comm.timeout_s=30");
  return sets;
}

struct Outcome {
  bool finished = false;
  std::string error;
  std::vector<double> losses;
  std::vector<char> weights;
  std::vector<supervision::Restart> restarts;
  std::vector<double> silences;  // a stalled rank's heartbeat silence when rank 0 found it (process layouts)
  double seconds = 0.0;
  std::vector<double> step_seconds;  // each step's wall time (in-process layouts)
};

std::vector<char> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

Outcome run(const std::vector<std::string>& sets, const std::string& weights_path) {
  Outcome o;
  const auto start = std::chrono::steady_clock::now();
  try {
    const RunConfig config = load_config(std::nullopt, sets);
    std::unique_ptr<Job> job = launch(config);
    for (std::int64_t s = 0; s < config.train.steps; ++s) {
      const auto t0 = std::chrono::steady_clock::now();
      o.losses.push_back(job->train_step(s).loss);
      o.step_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    job->save_weights(weights_path);
    o.weights = read_all(weights_path);
    o.restarts = job->restarts();
    o.finished = true;
  } catch (const std::exception& e) {
    o.error = e.what();
    o.error = o.error.substr(0, o.error.find('\n'));
  }
  o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return o;
}

std::string command_of(const std::vector<std::string>& sets, const std::string& troupe = "build/troupe") {
  std::string cmd = troupe + " train";
  for (const std::string& s : sets) {
    const auto eq = s.find('=');
    if (s.rfind("train.steps=", 0) == 0) cmd += " --steps " + s.substr(eq + 1);
    else if (s.find(' ') != std::string::npos) cmd += " --set " + s.substr(0, eq) + "=\"" + s.substr(eq + 1) + "\"";
    else cmd += " --set " + s;
  }
  return cmd;
}

// A layout whose replicas are processes: the troupe program, run as a user runs it; the losses from its
// --dump-losses file (17 significant digits: the doubles' exact values), the restarts from its report
// ("...; re-run 0.021 s after, recovered (the step done) 0.164 s after").
Outcome run_program(const std::string& troupe, const std::vector<std::string>& sets, const std::string& dir) {
  Outcome o;
  const auto start = std::chrono::steady_clock::now();
  const std::string losses = dir + "/losses.jsonl", weights = dir + "/weights.safetensors", out = dir + "/out.txt";
  std::filesystem::remove(weights);
  const std::string cmd = command_of(sets, troupe) + " --dump-losses " + losses + " --save " + weights + " > " + out +
                          " 2>&1 < /dev/null";
  const int status = std::system(cmd.c_str());
  std::ifstream text(out);
  std::string line, last;
  while (std::getline(text, line)) {
    const auto rerun = line.find("; re-run "), recovered = line.find("recovered (the step done) ");
    if (rerun != std::string::npos && recovered != std::string::npos) {
      supervision::Restart r{line.substr(0, rerun), -1, "", 0.0};
      r.restarted_s = std::stod(line.substr(rerun + 9));
      r.recovery_s = std::stod(line.substr(recovered + 26));
      o.restarts.push_back(r);
    }
    // "troupe: rank 1 (process 4242) sent no heartbeat for 2.04 s (the limit is 2.0 s, ...": the detection wait
    // (heartbeat.h's monitor line; a restart's cause says "sent no heartbeat for the limit", no figure)
    if (const auto silent = line.find("sent no heartbeat for "); line.rfind("troupe: rank ", 0) == 0 &&
                                                                  silent != std::string::npos &&
                                                                  std::isdigit(static_cast<unsigned char>(line[silent + 22])))
      o.silences.push_back(std::stod(line.substr(silent + 22)));
    if (line.find("error") != std::string::npos && last.empty()) last = line;
  }
  if (status != 0) {
    o.error = last.empty() ? fmt::format("exit status {}", status) : last;
  } else {
    std::ifstream dump(losses);
    while (std::getline(dump, line)) {
      const auto at = line.find("\"loss\": ");
      if (at != std::string::npos) o.losses.push_back(std::stod(line.substr(at + 8)));
    }
    o.weights = read_all(weights);
    o.finished = true;
  }
  o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return o;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// The step-boundary copy (restarts on): every stage's keep_boundary, timed on the layout's stages.
void snapshot_cost(const Options& o) {
  std::vector<std::string> sets = base_sets(o);
  for (const std::string& s : layout_sets("1f1b")) sets.push_back(s);
  const RunConfig config = load_config(std::nullopt, sets);
  ActorPipeline p(config, pipeline_options(config, 0));
  p.train_step(0);  // the optimizer state exists from the first update on
  std::vector<double> ms;
  std::size_t bytes = 0;
  for (int i = 0; i < 20; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    bytes = 0;
    for (int s = 0; s < p.driver().num_stages(); ++s) {
      p.stage(s).keep_boundary(1);
      bytes += p.stage(s).boundary_bytes();
    }
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  const auto t0 = std::chrono::steady_clock::now();
  p.train_step(1);
  const double step_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::printf("step-boundary copy, %s model, 2 stages: %.1f MB, %.2f ms median of 20 (both stages, one thread; "
              "each stage copies its own share on its own thread), a step %.0f ms\n",
              o.model.c_str(), bytes / 1e6, median(ms), step_ms);
}
}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw Error(ErrorKind::kUsage, a + " needs a value");
        return argv[++i];
      };
      if (a == "--trials") o.trials = std::stoi(next());
      else if (a == "--seed") o.seed = static_cast<unsigned>(std::stoul(next()));
      else if (a == "--steps") o.steps = std::stoi(next());
      else if (a == "--model") o.model = next();
      else if (a == "--layouts") o.layouts = split(next(), ',');
      else if (a == "--troupe") o.troupe = next();
      else throw Error(ErrorKind::kUsage, "unknown argument '" + a + "'");
    }
    if (o.trials < 1 || o.steps < 1) throw Error(ErrorKind::kUsage, "--trials and --steps must be >= 1");
    for (const std::string& l : o.layouts) layout_sets(l);
    base_sets(o);
    if (o.troupe.empty())
      o.troupe = (std::filesystem::canonical("/proc/self/exe").parent_path().parent_path() / "troupe").string();
    if (std::any_of(o.layouts.begin(), o.layouts.end(), processes) && !std::filesystem::exists(o.troupe))
      throw Error(ErrorKind::kUsage, "the process layouts run the troupe program, not found at " + o.troupe +
                                         "; name it with --troupe PATH");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "troupe_bench_chaos: %s\n", e.what());
    return 2;
  }
  const std::string dir = (std::filesystem::temp_directory_path() / ("troupe-chaos-" + std::to_string(::getpid()))).string();
  std::filesystem::create_directories(dir);

  std::map<std::string, Outcome> clean;
  for (const std::string& l : o.layouts) {
    const std::vector<std::string> sets = sets_for(o, l);
    clean[l] = processes(l) ? run_program(o.troupe, sets, dir) : run(sets, dir + "/clean.safetensors");
    if (!clean[l].finished) {
      std::fprintf(stderr, "troupe_bench_chaos: the clean %s run failed: %s\n", l.c_str(), clean[l].error.c_str());
      return 1;
    }
  }

  std::mt19937 rng(o.seed);
  const char* kinds[] = {"kill stage", "throw stage", "kill optimizer", "throw optimizer"};
  // Trials by fault class: stalls are found after a heartbeat silence, every other fault at once.
  struct Tally {
    int trials = 0, finished = 0, equal = 0;
    std::vector<double> restarted, recovered, detected, total, lost;
    std::size_t restarts = 0;
  };
  Tally all, found_at_once, stalls;
  std::vector<std::string> failures, unrestarted;
  for (int t = 0; t < o.trials; ++t) {
    const std::string layout = o.layouts[rng() % o.layouts.size()];
    std::string clause;
    if (tensor_processes(layout)) {
      // A shard's process killed or stalled, or a shard's step throwing (shard 0's actor lives in rank 0, which
      // restarts it in place; shard 1's process dies of it and is restarted).
      const unsigned kind = rng() % 4, shard = rng() % 2, step = rng() % o.steps;
      clause = kind == 0   ? fmt::format("kill shard 1 at step {}", step)
               : kind == 1 ? fmt::format("stall rank 1 at step {}", step)
                           : fmt::format("{} shard {} at step {}", kind == 2 ? "throw" : "kill", shard, step);
    } else if (tensor(layout)) {
      // A shard (of a stage) killed or throwing; under tp-pp also a stage or optimizer-state actor of shard 0.
      const unsigned kind = rng() % 6, shard = rng() % 2, stage = rng() % 2, step = rng() % o.steps;
      const bool pipelines = layout == "tp-pp";
      if (pipelines && kind < 4)
        clause = fmt::format("{} {} at step {}", kinds[kind], stage, step);
      else
        clause = fmt::format("{} shard {}{} at step {}", kind % 2 ? "throw" : "kill", shard,
                             pipelines && stage ? " of stage 1" : "", step);
      if (layout == "dp-tp") clause += fmt::format(" on replica {}", rng() % 2);
    } else if (parameter_servers(layout)) {
      // Threads: a worker's step or a shard's update throws; with processes, a worker process killed or stalled,
      // or (GPT, MLP) a worker's step throws.
      const int workers = ps_workers(layout);
      const unsigned kind = processes(layout) ? rng() % (layout == "ps-deepfm-procs" ? 2 : 3) : 2 + rng() % 2,
                     step = rng() % o.steps;
      const unsigned worker = rng() % workers;
      clause = kind < 2    ? fmt::format("{} rank {} at step {}", kind == 0 ? "kill" : "stall", 1 + worker % (workers - 1), step)
               : kind == 2 ? fmt::format("throw worker {} at step {}", worker, step)
                           : fmt::format("throw shard {} at step {}", worker % 2, step);
    } else if (!processes(layout)) {
      const unsigned kind = rng() % 4, stage = rng() % 2, step = rng() % o.steps;
      clause = fmt::format("{} {} at step {}", kinds[kind], stage, step);
      // A stage's kill or throw strikes as the step begins (kill) or at its first backward (throw), or
      // mid-step: before the forward or backward of any micro-batch (docs/failures.md, Fault injection).
      if (kind < 2) {
        const int microbatches = layout.rfind("dp", 0) == 0 ? 2 : 4;
        const unsigned point = rng() % (2 * microbatches + 1);
        if (point > 0)
          clause += fmt::format(" micro-batch {} {}", (point - 1) / 2, point % 2 ? "forward" : "backward");
      }
      if (layout.rfind("dp", 0) == 0) clause += fmt::format(" on replica {}", rng() % 2);
    } else {
      const unsigned kind = rng() % 6, stage = rng() % 2, step = rng() % o.steps;
      const unsigned replica = rng() % replicas_of(layout);
      if (kind >= 4)  // a whole rank process other than rank 0 (which is not restarted)
        clause = fmt::format("{} rank {} at step {}", kind == 4 ? "kill" : "stall",
                             1 + replica % (replicas_of(layout) - 1), step);
      else
        clause = fmt::format("{} {} at step {} on replica {}", kinds[kind], layout == "dp-procs" ? 0u : stage, step,
                             replica);
    }
    std::vector<std::string> sets = sets_for(o, layout);
    sets.push_back("fault.inject=" + clause);
    const Outcome out = processes(layout) ? run_program(o.troupe, sets, dir) : run(sets, dir + "/trial.safetensors");
    const Outcome& ref = clean[layout];
    const bool same = out.finished && out.losses == ref.losses && out.weights == ref.weights;
    const bool stall = clause.rfind("stall", 0) == 0;
    // The time lost to the fault: the faulty step's wall time less the clean run's same step (in-process
    // layouts), or the whole run's less the clean run's (process layouts, timed from outside).
    const std::int64_t fault_step = supervision::parse_fault_plan(clause).clauses.at(0).step;
    const double lost = !out.finished ? 0.0
                        : out.step_seconds.empty()
                            ? out.seconds - ref.seconds
                            : out.step_seconds.at(static_cast<std::size_t>(fault_step)) -
                                  ref.step_seconds.at(static_cast<std::size_t>(fault_step));
    for (Tally* tally : {&all, stall ? &stalls : &found_at_once}) {
      ++tally->trials;
      tally->finished += out.finished;
      tally->equal += same;
      tally->restarts += out.restarts.size();
      double detected = 0.0, recovery = 0.0;
      for (double s : out.silences) detected += s;
      for (const auto& r : out.restarts) {
        tally->restarted.push_back(r.restarted_s);
        tally->recovered.push_back(r.recovery_s);
        recovery = std::max(recovery, r.recovery_s);
      }
      if (stall && !out.silences.empty()) tally->detected.push_back(detected);
      if (!out.restarts.empty()) tally->total.push_back(detected + recovery);
      if (out.finished) tally->lost.push_back(lost);
    }
    // A trial that ended bitwise without a restart reported: listed, so that the restarts column can be read
    // against the trials. Every fault drawn restarts something, and every restart reaches the report (those
    // inside rank processes other than rank 0 too), so the list is empty unless something went unreported.
    if (same && out.restarts.empty()) unrestarted.push_back(fmt::format("{} [{}]", clause, layout));
    if (!same)
      failures.push_back(fmt::format("{} [{}]: {}\n    {}", clause, layout,
                                     out.finished ? "finished, but not bitwise equal to the clean run" : out.error,
                                     command_of(sets)));
  }
  std::filesystem::remove_all(dir);

  std::printf("chaos: %d trials (seed %u, %s model, %d steps, layouts %s), one fault each\n", o.trials, o.seed,
              o.model.c_str(), o.steps, fmt::format("{}", fmt::join(o.layouts, ",")).c_str());
  // A death is found at once (an actor's exit, a closed connection); a stalled process only when its heartbeats
  // have been silent for the limit: that detection wait is its own column, and the restart's times (re-run,
  // recovered) start when the death was found.
  std::printf("| faults | trials | finished | bitwise equal to the clean run | restarts | found after the fault "
              "(stalls: heartbeat silence): median, max | re-run after found: median, max | recovered (step done) after "
              "found: median, max | recovered after the fault: median, max | time lost to the fault: median, max |\n"
              "|---|---|---|---|---|---|---|---|---|---|\n");
  auto mx = [](const std::vector<double>& v) { return v.empty() ? 0.0 : *std::max_element(v.begin(), v.end()); };
  auto row = [&](const char* name, const Tally& x, bool with_stalls) {
    const std::string found = !with_stalls ? std::string("at once")
                              : x.detected.empty() ? std::string("-")
                                                   : fmt::format("{:.3f} s, {:.3f} s", median(x.detected), mx(x.detected));
    std::printf("| %s | %d | %d | %d | %zu | %s | %.3f s, %.3f s | %.3f s, %.3f s | %.3f s, %.3f s | %.3f s, %.3f s |\n",
                name, x.trials, x.finished, x.equal, x.restarts, found.c_str(), median(x.restarted), mx(x.restarted),
                median(x.recovered), mx(x.recovered), median(x.total), mx(x.total), median(x.lost), mx(x.lost));
  };
  row("all", all, stalls.trials > 0);
  if (stalls.trials > 0) {
    row("kills and throws", found_at_once, false);
    row("stalls", stalls, true);
  }
  for (const std::string& l : o.layouts) {
    std::string steps;
    for (double t : clean[l].step_seconds) steps += fmt::format("{}{:.3f}", steps.empty() ? "" : ", ", t);
    std::printf("clean %s run: %.2f s%s\n", l.c_str(), clean[l].seconds,
                steps.empty() ? "" : fmt::format(" (steps: {} s)", steps).c_str());
  }
  if (!unrestarted.empty()) {
    std::printf("survived bitwise with no restart reported:\n");
    for (const std::string& f : unrestarted) std::printf("  %s\n", f.c_str());
  }
  if (!failures.empty()) {
    std::printf("not survived:\n");
    for (const std::string& f : failures) std::printf("  %s\n", f.c_str());
  }
  snapshot_cost(o);
  return all.equal == o.trials ? 0 : 1;
}
