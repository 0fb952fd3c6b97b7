// `troupe train`: validates inputs up front, trains, reports, and writes outputs atomically.
#include "cli/train_command.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "actors/runner.h"
#include "cli/progress.h"
#include "runtime/config/config_loader.h"
#include "runtime/config/weights_config.h"
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
int train_loop(Job& job, const RunConfig& config, const TrainOptions& options);
}  // namespace

int run_train(const TrainOptions& options) {
  std::vector<std::string> sets = options.sets;
  if (options.steps) sets.push_back("train.steps=" + std::to_string(*options.steps));
  if (options.seed) sets.push_back("train.seed=" + std::to_string(*options.seed));
  if (!options.init_from.empty() && !fs::is_regular_file(options.init_from))
    throw Error(ErrorKind::kUsage, "--init-from " + options.init_from + ": no such file");
  ConfigOrigins explicit_keys;  // model keys not among them come from the --init-from file's metadata
  const RunConfig config = adopt_model_config_from_weights(load_config(options.config_path, sets, &explicit_keys, "--set"),
                                                           explicit_keys, options.init_from);
  if (options.rank > 0) {  // a rank process this program started (comm.transport = tcp)
    run_started_rank(config, options.rank, options.init_from);
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
  if (options.print_config) std::printf("%s", config_to_toml(config).c_str());

  std::unique_ptr<Job> job = launch(config, {.args = options.args});
  if (const std::string summary = job->summary(); !summary.empty()) std::printf("troupe: %s", summary.c_str());
  const int code = train_loop(*job, config, options);
  if (const std::string report = job->report(); config.train.steps > 0 && !report.empty())
    std::printf("troupe: %s", report.c_str());
  job->finish();
  return code;
}

namespace {
// The loop every layout shares: train, report progress, evaluate, write the trace and the weights.
int train_loop(Job& trainer, const RunConfig& config, const TrainOptions& options) {
  if (!options.init_from.empty()) trainer.load_weights(options.init_from);
  TraceRecorder trace(!options.trace_path.empty());
  if (trace.enabled()) trainer.set_trace(&trace);
  const auto& m = config.model;
  const std::string shape = m.kind == ModelKind::gpt
                                ? fmt::format("n_layer={} n_head={} n_embd={} block_size={} vocab={}", m.n_layer, m.n_head,
                                              m.n_embd, m.block_size, m.vocab_size)
                                : fmt::format("hidden={}", fmt::join(m.mlp_hidden, ","));
  std::printf("troupe: %s (%s), %s parameters, %s\n", std::string(name_of(m.kind)).c_str(), shape.c_str(),
              human_count(trainer.parameter_count()).c_str(), trainer.dataset().describe().c_str());
  std::printf("troupe: %s lr=%g, batch %d, %lld steps, %d threads%s%s\n", std::string(name_of(config.optim.kind)).c_str(),
              config.optim.lr_or_default(), config.train.batch_size, static_cast<long long>(config.train.steps),
              trainer.threads(), config.train.deterministic ? ", deterministic" : "",
              options.init_from.empty() ? "" : (", weights from " + options.init_from).c_str());
  std::fflush(stdout);

  std::FILE* dump = nullptr;
  const std::string dump_tmp = options.dump_losses + ".partial";
  if (!options.dump_losses.empty()) {
    dump = std::fopen(dump_tmp.c_str(), "w");
    if (!dump) throw Error(ErrorKind::kIo, "--dump-losses " + options.dump_losses + ": cannot write " + dump_tmp);
  }

  ProgressReporter progress(stdout, config.train.steps);
  const auto start = std::chrono::steady_clock::now();
  double last_loss = 0.0, tokens = 0.0, compute_s = 0.0;
  for (std::int64_t step = 0; step < config.train.steps; ++step) {
    const StepStats s = trainer.train_step(step);
    last_loss = s.loss;
    if (step > 0 || config.train.steps == 1) {  // step 0 includes first-touch allocation
      tokens += s.tokens_per_s * s.seconds;
      compute_s += s.seconds;
    }
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    progress.step(step, s.loss, s.lr, s.tokens_per_s, elapsed);
    if (dump) {
      std::fprintf(dump, "{\"step\": %lld, \"loss\": %.17g, \"lr\": %.9g, \"tokens_per_s\": %.1f}\n",
                   static_cast<long long>(step), s.loss, s.lr, s.tokens_per_s);
      std::fflush(dump);
    }
    const bool last = step + 1 == config.train.steps;
    if (last || (config.train.eval_every > 0 && (step + 1) % config.train.eval_every == 0)) {
      const EvalStats e = trainer.evaluate();
      std::string line = fmt::format("eval after step {}: validation loss {:.4f}", step + 1, e.loss);
      if (m.kind == ModelKind::mlp) line += fmt::format(", test accuracy {:.2f}%", 100.0 * e.accuracy);
      progress.message(line);
    }
  }
  progress.finish();
  if (dump) {
    std::fclose(dump);
    fs::rename(dump_tmp, options.dump_losses);
  }
  if (config.train.steps > 0) {
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("troupe: done in %.1fs, final train loss %.4f, %.0f %s/s\n", wall, last_loss,
                compute_s > 0 ? tokens / compute_s : 0.0, m.kind == ModelKind::gpt ? "tokens" : "samples");
  }
  if (trace.enabled()) {
    trace.write_chrome_trace(options.trace_path);
    const ParallelConfig& par = config.parallel;
    const double ideal = par.pipeline > 1 ? theoretical_bubble(par.schedule, par.pipeline, par.microbatches,
                                                               par.virtual_stages)
                                          : 0.0;
    std::printf("troupe: trace written to %s; bubble (idle share of step time) per actor, schedule's ideal %.1f%%:\n",
                options.trace_path.c_str(), 100.0 * ideal);
    for (const auto& t : trace.track_stats()) {
      if (t.communication) {  // overlaps compute by design: its idle time is not a bubble
        std::printf("  %-10s communicating %5.1f%% of step time\n", t.name.c_str(), 100.0 * (1.0 - t.bubble));
      } else {
        std::printf("  %-10s measured %5.1f%%\n", t.name.c_str(), 100.0 * t.bubble);
      }
    }
  }
  if (!options.save_path.empty()) {
    trainer.save_weights(options.save_path);
    std::printf("troupe: weights written to %s\n", options.save_path.c_str());
  }
  return 0;
}

}  // namespace

}  // namespace troupe
