// `troupe train`: validates inputs up front, trains, reports, and writes outputs atomically.
#include "cli/train_command.h"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <optional>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fmt/format.h>

#include "actors/runner.h"
#include "cli/metrics.h"
#include "cli/progress.h"
#include "cli/report_command.h"
#include "cli/run_dir.h"
#include "runtime/checkpoint/checkpoint_store.h"
#include "runtime/checkpoint/checkpoint_writer.h"
#include "runtime/checkpoint/resume_rules.h"
#include "runtime/config/config_loader.h"
#include "runtime/config/weights_config.h"
#include "runtime/cpu/cpu_peak.h"
#include "runtime/model_flops.h"
#include "runtime/io/partial_files.h"
#include "runtime/launch/join_config.h"
#include "runtime/signals/stop_signal.h"
#include "runtime/trace/trace.h"

namespace troupe {

namespace fs = std::filesystem;

namespace {
// Refuses to start a run whose outputs could not be written at the end.
void check_output_path(const std::string& option, const std::string& path) {
  if (path.empty()) return;
  fs::path p(path);
  fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw Error(ErrorKind::kUsage, option + " " + path + ": directory " + dir.string() + " does not exist");
  if (fs::is_directory(p, ec)) throw Error(ErrorKind::kUsage, option + " " + path + ": is a directory, give a file name");
}

std::string human_count(std::int64_t n) {
  if (n >= 1'000'000) return fmt::format("{:.2f}M", n / 1e6);
  if (n >= 1'000) return fmt::format("{:.1f}k", n / 1e3);
  return std::to_string(n);
}
}  // namespace

namespace {
// Where training starts: step 0, or a checkpoint's step and state (--resume).
struct Start {
  std::int64_t step = 0;
  std::optional<LoadedCheckpoint> checkpoint;
};
// The signal that stopped the run at a step boundary (0: it ran to the end).
int train_loop(Job& job, const RunConfig& config, const TrainOptions& options, RunDir* run, Start& start);
void print_run_dir(const RunDir& run, std::int64_t steps, bool report_written);

// Rank 0 names the checkpoint it resumes from to the rank processes it starts, so that all of them read
// the same one (the newest could change once rank 0 writes).
constexpr const char* kResumeEnv = "TROUPE_RESUME_CHECKPOINT";

// The checkpoint --resume DIR continues from: the newest whole one, newer damaged ones reported.
std::string choose_checkpoint(const TrainOptions& options) {
  if (options.rank > 0)
    if (const char* chosen = std::getenv(kResumeEnv)) return chosen;
  try {
    return newest_valid_checkpoint(options.resume, [](const std::string& path, const std::string& problem) {
      std::fprintf(stderr, "troupe: checkpoint %s is not usable (%s); trying the one before it\n", path.c_str(),
                   problem.c_str());
    });
  } catch (const Error& e) {
    throw Error(e.kind(), std::string("--resume ") + e.what());
  }
}
}  // namespace

int run_train(const TrainOptions& options) {
  std::vector<std::string> sets = options.sets;
  if (options.steps) sets.push_back("train.steps=" + std::to_string(*options.steps));
  if (options.seed) sets.push_back("train.seed=" + std::to_string(*options.seed));
  if (!options.init_from.empty() && !fs::is_regular_file(options.init_from))
    throw Error(ErrorKind::kUsage, "--init-from " + options.init_from + ": no such file");
  if (!options.init_from.empty() && !options.resume.empty())
    throw Error(ErrorKind::kUsage, "--resume and --init-from together: a resumed run takes its weights from the "
                                   "checkpoint; give one of them");
  // --resume: the checkpoint's configuration is the base (then --config, if given, replaces it, and --set
  // overrides either); the model and the optimizer kind must stay as they were.
  std::string checkpoint;
  std::optional<std::string> config_path = options.config_path;
  if (!options.resume.empty()) {
    checkpoint = choose_checkpoint(options);
    if (!config_path) config_path = (fs::path(checkpoint) / "config.toml").string();
  }
  ConfigOrigins explicit_keys;  // model keys not among them come from the --init-from file's metadata
  RunConfig config = adopt_model_config_from_weights(load_config(config_path, sets, &explicit_keys, "--set"),
                                                     explicit_keys, options.init_from);
  // A process a launcher started (torchrun, Slurm, mpirun, or comm.rank/comm.world_size) is one rank
  // of a job across hosts (docs/multi-host.md); rank processes troupe starts itself (--rank) are not.
  if (options.rank <= 0) {
    const auto join = launcher::resolve_join(launcher::join_settings(config, explicit_keys), launcher::process_environment());
    if (join && join->world_size > 1) config = launcher::join_config(config, *join, explicit_keys);
  }
  if (!checkpoint.empty())
    check_resumable(config, load_config((fs::path(checkpoint) / "config.toml").string(), {}), checkpoint);
  if (options.rank > 0) {  // a rank process this program started (comm.transport = tcp)
    run_started_rank(config, options.rank, options.init_from, checkpoint);
    return 0;
  }
  if (config.comm.rank > 0 && config.comm.world_size > 1 && !options.print_plan) {  // a joined job's rank: rank 0 reports
    run_started_rank(config, config.comm.rank, options.init_from, checkpoint);
    return 0;
  }
  if (options.print_plan) {  // the layout, checked as a run would check it, and nothing run
    if (options.print_config) std::printf("%s", config_to_toml(config).c_str());
    std::printf("%s", describe_plan(config).c_str());
    return 0;
  }
  plan_run(config);  // a device this machine lacks, or a layout that cannot be built, stops the run here
  check_output_path("--save", options.save_path);
  check_output_path("--dump-losses", options.dump_losses);
  check_output_path("--trace", options.trace_path);
  if (!config.train.checkpoint_dir.empty()) check_checkpoint_dir(config.train.checkpoint_dir, "train.checkpoint_dir");
  Start start;
  if (!checkpoint.empty()) {
    start.checkpoint = read_checkpoint(checkpoint);
    start.step = start.checkpoint->state.step;
    ::setenv(kResumeEnv, checkpoint.c_str(), 1);  // for the rank processes launch() starts
  }
  // From here on the first SIGINT or SIGTERM stops the run at a step boundary (runtime/signals/stop_signal.h).
  install_stop_handlers();

  // The run directory, made only once the inputs are known to be good: bad input leaves nothing behind.
  std::unique_ptr<RunDir> run;
  if (!options.run_dir.empty()) {
    run = std::make_unique<RunDir>(options.run_dir, "--run-dir");
  } else if (!options.runs_parent.empty()) {
    run = std::make_unique<RunDir>(RunDir::fresh_path(options.runs_parent, std::string(name_of(config.model.kind))),
                                   "--runs");
  }
  if (run) {
    run->write_file("config.toml", config_to_toml(config));
    run->write_file("plan.txt", describe_plan(config));
    print_and_log(run.get(), "troupe: run directory " + run->dir() + "/\n");
  }
  try {
    if (options.print_config) print_and_log(run.get(), config_to_toml(config));
    std::unique_ptr<Job> job = launch(config, {.args = options.args});
    if (const std::string summary = job->summary(); !summary.empty()) print_and_log(run.get(), "troupe: " + summary);
    if (!config.train.checkpoint_dir.empty() || start.checkpoint)
      if (const std::string refusal = job->checkpoint_refusal(); !refusal.empty())
        throw Error(ErrorKind::kConfig, fmt::format("{}: checkpoints are not built yet for {}",
                                                    start.checkpoint ? "--resume" : "train.checkpoint_dir", refusal));
    const int stopped_by = train_loop(*job, config, options, run.get(), start);
    if (stopped_by) {
      job.reset();  // stops every rank process now: they wait in a step that will not come
      if (run) run->finish();
      return 128 + stopped_by;
    }
    if (const std::string report = job->report(); config.train.steps > 0 && !report.empty())
      print_and_log(run.get(), "troupe: " + report);
    job->finish();
    if (run) {
      run->finish();
      bool report_written = false;
      if (config.train.steps > 0) {
        write_report({run->dir()});
        report_written = true;
      }
      print_run_dir(*run, config.train.steps, report_written);
    }
    return 0;
  } catch (const std::exception& e) {
    if (run) {
      run->fail(e.what());
      std::fflush(stdout);
      std::fprintf(stderr, "troupe: the run failed; what it kept is in %s/ (FAILED.txt, log.txt, metrics.partial.*)\n",
                   run->dir().c_str());
    }
    throw;
  }
}

namespace {
// Per actor, what one step's window held: compute, transfers (send/recv, or a sync thread's
// collectives) and nothing.
std::vector<StageTime> stage_times(const std::vector<TrackStats>& tracks) {
  std::vector<StageTime> out;
  for (const TrackStats& t : tracks) {
    const double compute = t.communication ? 0.0 : t.busy_us, comm = t.communication ? t.busy_us : t.comm_us;
    out.push_back({t.name, compute / 1e6, comm / 1e6, std::max(0.0, t.span_us - compute - comm) / 1e6});
  }
  return out;
}

// The loop every layout shares: train, report progress and metrics, evaluate, write the trace and the weights.
int train_loop(Job& trainer, const RunConfig& config, const TrainOptions& options, RunDir* run, Start& start) {
  if (!options.init_from.empty()) trainer.load_weights(options.init_from);
  if (start.checkpoint) {
    trainer.restore_training_state(start.checkpoint->state, start.checkpoint->path);
    print_and_log(run, fmt::format("troupe: resuming from {} after step {}\n", start.checkpoint->path, start.step));
    start.checkpoint.reset();  // its tensors are in the trainer now
  }
  TraceRecorder trace(!options.trace_path.empty() || run);
  if (trace.enabled()) trainer.set_trace(&trace);
  const auto& m = config.model;
  const std::string unit = is_language_model(m.kind) ? "tokens" : "samples";
  const std::string shape =
      m.kind == ModelKind::gpt   ? fmt::format("n_layer={} n_head={} n_embd={} block_size={} vocab={}", m.n_layer,
                                               m.n_head, m.n_embd, m.block_size, m.vocab_size)
      : m.kind == ModelKind::cnn ? fmt::format("channels={} blocks={}", fmt::join(m.cnn_channels, ","),
                                               fmt::join(m.cnn_blocks, ","))
      : m.kind == ModelKind::lstm ? fmt::format("n_layer={} hidden={} block_size={} vocab={}", m.n_layer, m.n_embd,
                                                m.block_size, m.vocab_size)
      : m.kind == ModelKind::deepfm ? fmt::format("embed_dim={} deep_hidden={} hashed_rows={} max_cardinality={}",
                                                  m.embed_dim, fmt::join(m.deep_hidden, ","), m.hashed_rows,
                                                  m.max_cardinality)
                                 : fmt::format("hidden={}", fmt::join(m.mlp_hidden, ","));
  print_and_log(run, fmt::format("troupe: {} ({}), {} parameters, {}\n", name_of(m.kind), shape,
                                 human_count(trainer.parameter_count()), trainer.data_description()));
  print_and_log(run, fmt::format("troupe: {} lr={}, batch {}, {} steps, {} threads{}{}{}\n", name_of(config.optim.kind),
                                 config.optim.lr_or_default(), config.train.batch_size, config.train.steps,
                                 trainer.threads(), config.train.deterministic ? ", deterministic" : "",
                                 config.train.precision == Precision::bf16 ? ", bf16 products" : "",
                                 options.init_from.empty() ? "" : ", weights from " + options.init_from));

  // MFU (runtime/model_flops.h) against this CPU's measured peak (runtime/cpu/cpu_peak.h): CPU runs of the
  // models whose FLOPs are counted.
  const double flops_per_unit = train_flops_per_unit(m);
  const bool on_cpu = !computes_on_cuda(config);
  double peak = 0.0;
  std::string peak_name;
  CpuPeak cpu;
  if (flops_per_unit > 0.0 && on_cpu && config.train.steps > start.step) {
    // The peak of every core the job computes on: each data replica, pipeline stage and tensor shard has a
    // backend of trainer.threads() threads (the first one's), together at most the machine's threads.
    const int units = config.parallel.data * config.parallel.pipeline * config.parallel.tensor;
    const int hardware = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    cpu = cpu_peak(std::min(hardware, trainer.threads() * units));
    peak = cpu.peak(config.train.precision);
    const bool bf16_peak = config.train.precision == Precision::bf16 && cpu.bf16_dot > 0.0;
    peak_name = bf16_peak ? "bf16 peak (vdpbf16ps loop)" : "f32 peak (FMA loop)";
    if (peak > 0.0)
      print_and_log(run, fmt::format("troupe: this CPU on {} threads: f32 FMA loop {:.1f} GFLOP/s, bf16 vdpbf16ps loop {}; "
                                     "matrix products reached: sgemm {:.1f} GFLOP/s, bf16 {} (cached in {}; troupe peak "
                                     "--refresh measures again)\n",
                                     cpu.threads, cpu.f32_fma / 1e9,
                                     cpu.bf16_dot > 0 ? fmt::format("{:.1f} GFLOP/s", cpu.bf16_dot / 1e9) : "n/a",
                                     cpu.sgemm / 1e9,
                                     cpu.bf16_gemm > 0 ? fmt::format("{:.1f} GFLOP/s", cpu.bf16_gemm / 1e9) : "n/a",
                                     cpu_peak_cache_path(cpu.cpu, cpu.threads)));
  }

  std::FILE* dump = nullptr;
  const std::string dump_tmp = options.dump_losses + ".partial";
  if (!options.dump_losses.empty()) {
    dump = std::fopen(dump_tmp.c_str(), "w");
    if (!dump) throw Error(ErrorKind::kIo, "--dump-losses " + options.dump_losses + ": cannot write " + dump_tmp);
  }
  // A failed run leaves no partial loss dump behind (a run directory keeps its own, so named).
  struct DumpGuard {
    std::FILE*& f;
    const std::string& tmp;
    ~DumpGuard() {
      if (!f) return;
      std::fclose(f);
      std::error_code ignored;
      fs::remove(tmp, ignored);
    }
  } dump_guard{dump, dump_tmp};
  const PartialPath dump_partial(dump_tmp);  // and neither does an abort (a second Ctrl-C)

  // Checkpoints: a copy of the state at the step boundary (the pause training sees), written by a
  // background thread while the next steps run (runtime/checkpoint/checkpoint_writer.h).
  std::unique_ptr<CheckpointWriter> writer;
  if (!config.train.checkpoint_dir.empty())
    writer = std::make_unique<CheckpointWriter>(config.train.checkpoint_dir, config, config.train.keep_checkpoints);
  std::int64_t last_checkpoint = start.step, checkpoints = 0;
  double snapshot_s = 0.0;
  auto checkpoint = [&](std::int64_t steps_done) {
    const auto t0 = std::chrono::steady_clock::now();
    writer->submit(trainer.training_state(steps_done));
    snapshot_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    last_checkpoint = steps_done;
    ++checkpoints;
  };

  ProgressReporter progress(stdout, config.train.steps, unit, run ? run->log() : nullptr);
  if (peak > 0.0) progress.show_mfu(flops_per_unit, peak);
  const auto started = std::chrono::steady_clock::now();
  double last_loss = 0.0, units = 0.0, compute_s = 0.0;
  int stopped_by = 0;
  std::int64_t done = start.step;
  for (std::int64_t step = start.step; step < config.train.steps; ++step) {
    if ((stopped_by = stop_signal())) break;
    const std::size_t first_span = trace.span_count();
    const double begin_us = TraceRecorder::now_us();
    const StepStats s = trainer.train_step(step);
    const double end_us = TraceRecorder::now_us();
    done = step + 1;
    last_loss = s.loss;
    if (step > start.step || config.train.steps == start.step + 1) {  // the first step includes first-touch allocation
      units += s.tokens_per_s * s.seconds;
      compute_s += s.seconds;
    }
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    MetricsRow row;
    row.step = step + 1;  // counted from 1 on screen and in every file (cli/metrics.h)
    row.loss = s.loss;
    row.lr = s.lr;
    row.throughput = s.tokens_per_s;
    if (config.train.grad_clip > 0.0) row.grad_norm = s.grad_norm;
    row.step_s = s.seconds;
    row.elapsed_s = elapsed;
    if (trace.enabled()) {
      row.stages = stage_times(trace.track_stats(begin_us, end_us, first_span));
      row.window_us = {begin_us, end_us};
    }
    progress.step(row.step, s.loss, s.lr, s.tokens_per_s, elapsed);
    const bool last = step + 1 == config.train.steps;
    if (last || (config.train.eval_every > 0 && (step + 1) % config.train.eval_every == 0)) {
      const EvalStats e = trainer.evaluate();
      row.val_loss = e.loss;
      std::string line = fmt::format("eval after step {}: validation loss {:.4f}", row.step, e.loss);
      if (e.accuracy >= 0.0) row.val_accuracy = e.accuracy;
      if (is_recommender(m.kind))
        line = fmt::format("eval after step {}: test log-loss {:.4f}, AUC {:.4f} over {} samples", row.step, e.loss,
                           e.auc, e.rows);
      else if (!is_language_model(m.kind)) line += fmt::format(", test accuracy {:.2f}%", 100.0 * e.accuracy);
      progress.message(line);
    }
    if (dump) {
      std::fprintf(dump, "%s\n", to_json_line(row, unit).c_str());
      std::fflush(dump);
    }
    if (run) run->add_metrics(row, unit);
    if (writer && config.train.checkpoint_every > 0 && done % config.train.checkpoint_every == 0 && !last)
      checkpoint(done);
  }
  if (!stopped_by && stop_signal() && done < config.train.steps) stopped_by = stop_signal();
  progress.finish();
  if (writer) {
    if (done > last_checkpoint) checkpoint(done);  // the end of the run, or where a signal stopped it
    const std::string written = writer->wait();
    if (checkpoints > 0) {
      const double train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      print_and_log(run, fmt::format("troupe: {} checkpoint{} written, the newest {}; step boundaries paused {:.3f}s for "
                                     "copies ({:.2f}% of {:.1f}s), background writing took {:.2f}s, {:.3f}s of it waited "
                                     "for\n",
                                     checkpoints, checkpoints == 1 ? "" : "s", written, snapshot_s,
                                     train_s > 0 ? 100.0 * snapshot_s / train_s : 0.0, train_s, writer->write_s(),
                                     writer->waited_s()));
    }
  }
  if (stopped_by) {
    std::fflush(stdout);
    const std::string line = fmt::format(
        "troupe: stopped by {} after step {} of {}{}\n", stopped_by == SIGINT ? "SIGINT" : "SIGTERM", done,
        config.train.steps,
        writer ? fmt::format("; troupe train --resume {} continues", config.train.checkpoint_dir)
               : std::string(" (no checkpoint: train.checkpoint_dir is not set)"));
    std::fputs(line.c_str(), stderr);
    if (run) std::fputs(line.c_str(), run->log());
    return stopped_by;  // the loss dump is removed (DumpGuard): it would stop short of train.steps
  }
  if (dump) {
    std::fclose(dump);
    dump = nullptr;
    fs::rename(dump_tmp, options.dump_losses);
  }
  if (config.train.steps > 0) {
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const double rate = compute_s > 0 ? units / compute_s : 0.0;
    print_and_log(run, fmt::format("troupe: done in {:.1f}s, final train loss {:.4f}, {:.0f} {}/s\n", wall, last_loss,
                                   rate, unit));
    if (peak > 0.0) {
      const double flops = model_flops_per_s(flops_per_unit, rate);
      print_and_log(run, fmt::format("troupe: model FLOPs {:.1f} GFLOP/s ({:.4g} FLOP per {}, {}), MFU {:.1f}% of the "
                                     "{} {:.1f} GFLOP/s; the best {} product reached {:.1f} GFLOP/s ({:.1f}%)\n",
                                     flops / 1e9, flops_per_unit, unit == "tokens" ? "token" : "sample",
                                     m.kind == ModelKind::gpt ? "6N + 12LCT" : m.kind == ModelKind::cnn ? "6 x multiply-adds" : "6N", 100.0 * mfu(flops, peak), peak_name,
                                     peak / 1e9, config.train.precision == Precision::bf16 ? "bf16" : "f32",
                                     (config.train.precision == Precision::bf16 && cpu.bf16_gemm > 0 ? cpu.bf16_gemm
                                                                                                      : cpu.sgemm) / 1e9,
                                     100.0 * mfu(config.train.precision == Precision::bf16 && cpu.bf16_gemm > 0
                                                     ? cpu.bf16_gemm
                                                     : cpu.sgemm,
                                                 peak)));
    }
  }
  if (trace.enabled()) {
    std::vector<std::string> paths;
    if (!options.trace_path.empty()) paths.push_back(options.trace_path);
    if (run) paths.push_back(run->path("trace.json"));
    for (const std::string& p : paths) trace.write_chrome_trace(p);
    const ParallelConfig& par = config.parallel;
    const double ideal = par.pipeline > 1 ? theoretical_bubble(par.schedule, par.pipeline, par.microbatches,
                                                               par.virtual_stages)
                                          : 0.0;
    std::string text = fmt::format(
        "troupe: trace written to {}; bubble (idle share of step time) per actor, schedule's ideal {:.1f}%:\n",
        fmt::join(paths, " and "), 100.0 * ideal);
    for (const auto& t : trace.track_stats()) {
      if (t.communication) {  // overlaps compute by design: its idle time is not a bubble
        text += fmt::format("  {:<10} communicating {:5.1f}% of step time\n", t.name, 100.0 * (1.0 - t.bubble));
      } else {
        text += fmt::format("  {:<10} measured {:5.1f}%\n", t.name, 100.0 * t.bubble);
      }
    }
    print_and_log(run, text);
  }
  if (!options.save_path.empty()) {
    trainer.save_weights(options.save_path);
    print_and_log(run, "troupe: weights written to " + options.save_path + "\n");
  }
  if (run) trainer.save_weights(run->path("weights.safetensors"));
  return 0;
}

// The end of a run with a directory: where everything is.
void print_run_dir(const RunDir& run, std::int64_t steps, bool report_written) {
  std::string text = fmt::format("troupe: this run is kept in {}/\n", run.dir());
  auto line = [&](const std::string& name, const std::string& what) {
    if (fs::exists(run.path(name))) text += fmt::format("  {:<20} {}\n", name, what);
  };
  line("config.toml", "the resolved configuration (troupe train --config " + run.path("config.toml") + " repeats it)");
  line("plan.txt", "the plan: ranks, devices, partition, each stage's program");
  line("log.txt", "everything printed above");
  line("metrics.jsonl", fmt::format("{} steps of metrics, one JSON object per step (also metrics.csv)", steps));
  line("trace.json", "the trace of every actor (open in https://ui.perfetto.dev or chrome://tracing)");
  line("weights.safetensors", "the final weights (troupe train --init-from ...; they carry their model config)");
  if (report_written) line("report.html", "plots of loss, throughput, the plan and the timeline: open in a browser");
  print_and_log(&run, text);
}

}  // namespace

}  // namespace troupe
