// The `troupe` program: subcommands, help, and the mapping from errors to exit codes.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <fmt/format.h>
#include <string>
#include <unistd.h>

#include "cli/bench_command.h"
#include "cli/eval_command.h"
#include "cli/report_command.h"
#include "cli/sample_command.h"
#include "cli/train_command.h"
#include "runtime/config/config_loader.h"
#include "runtime/config/config_schema.h"
#include "runtime/cpu/cpu_peak.h"
#include "runtime/device_info.h"
#include "runtime/error.h"
#include "runtime/process/heartbeat.h"
#include "runtime/process/parent_watch.h"

namespace {
// --steps and --seed are read by the config schema's own parser, as --set would read them: CLI11's
// conversion saturates (--steps 99999999999999999999999 ran 2^63-1 steps) and reads 010 as octal. The
// text is rewritten to its canonical decimal form, so the conversion after this check is exact.
CLI::Validator as_config_key(const char* name) {
  return CLI::Validator(
      [name](std::string& text) -> std::string {
        try {
          text = troupe::config_value_to_text(troupe::parse_config_text(*troupe::find_config_key(name), text));
          return {};
        } catch (const troupe::Error& e) {
          return e.what();
        }
      },
      "", name);
}
}  // namespace

int main(int argc, char** argv) {
  using namespace troupe;
  // A rank process started by a troupe rank 0 ends as soon as that process is gone (parent_watch.h).
  watch_parent_from_environment("rank process " + std::to_string(getpid()));
  // ... and tells it, several times a second, that it is alive (heartbeat.h).
  send_heartbeats_from_environment();
  CLI::App app{"troupe: train neural networks across devices and hosts, on actors.", "troupe"};
  app.require_subcommand(1);

  TrainOptions train;
  CLI::App* train_cmd = app.add_subcommand("train", "Train a model (default: the built-in GPT on the built-in corpus).");
  train_cmd->add_option("--config", train.config_path, "TOML file with config keys (tables [model], [train], ...)");
  train_cmd->add_option("--set", train.sets, "Override one config key: --set train.steps=100 (repeatable)");
  train_cmd->add_option("--steps", train.steps, "Shorthand for --set train.steps=N")->transform(as_config_key("train.steps"));
  train_cmd->add_option("--seed", train.seed, "Shorthand for --set train.seed=S")->transform(as_config_key("train.seed"));
  train_cmd->add_option("--save", train.save_path, "Write the final weights (safetensors); with train.steps=0 the initial ones");
  train_cmd->add_option("--resume", train.resume,
                        "Continue from the newest whole checkpoint in DIR (train.checkpoint_dir of an earlier run), "
                        "under this run's layout; config keys not given come from the checkpoint");
  train_cmd->add_option("--init-from", train.init_from, "Load initial weights (safetensors); model.* keys not set explicitly come from the file");
  train_cmd->add_option("--dump-losses", train.dump_losses,
                        "Write one JSON line per step, as a run directory's metrics.jsonl: step (from 1), loss, lr, "
                        "tokens_per_s (samples_per_s for the mlp), grad_norm, step_s, val_loss when evaluated, ...");
  train_cmd->add_option("--trace", train.trace_path,
                        "Write a Chrome trace (Perfetto, chrome://tracing): one track per actor; prints measured bubbles");
  train_cmd->add_option("--run-dir", train.run_dir,
                        "Keep this run in DIR (new or empty): config.toml, plan.txt, log.txt, metrics.jsonl/.csv, "
                        "trace.json, weights.safetensors, report.html");
  train_cmd->add_option("--runs", train.runs_parent,
                        "Keep this run in a fresh PARENT/<date>-<time>-<model>/ (scripts/train: --runs runs); "
                        "--run-dir wins. Without either, troupe train keeps no run directory");
  train_cmd->add_flag("--print-config", train.print_config, "Print the effective configuration as TOML first");
  train_cmd->add_flag("--print-plan", train.print_plan,
                      "Print the plan (ranks, their places, groups, each stage's layers and program) and exit");
  // Hidden: the rank of a data-parallel process that `troupe train` started itself (comm.transport = tcp).
  train_cmd->add_option("--rank", train.rank)->group("")->check(CLI::Range(1, 1 << 20));
  // The last of a repeated option wins, as with --set: `scripts/train ARGS` appends ARGS to its defaults.
  for (CLI::Option* option : train_cmd->get_options())
    if (option->get_expected_max() == 1) option->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  train_cmd->footer("Config keys (for --set and --config):\n" + config_help());

  bool config_markdown_flag = false;
  CLI::App* config_cmd = app.add_subcommand("config", "Print every config key with its type, default and meaning.");
  config_cmd->add_flag("--markdown", config_markdown_flag,
                       "As Markdown tables (the text of docs/config.md: build/troupe config --markdown > docs/config.md)");

  CLI::App* devices_cmd = app.add_subcommand("devices", "List the devices actors can be placed on (CPU threads, CUDA GPUs).");

  int peak_threads = 0;
  bool peak_refresh = false;
  CLI::App* peak_cmd = app.add_subcommand(
      "peak", "Print this CPU's measured peak FLOP/s (what MFU divides by) and the best matrix products reached");
  peak_cmd->add_option("--threads", peak_threads, "Threads, as train.threads (0: every hardware thread)")
      ->check(CLI::Range(0, 4096));
  peak_cmd->add_flag("--refresh", peak_refresh, "Measure again and rewrite the cached figures");

  std::vector<std::string> report_dirs;
  CLI::App* report_cmd = app.add_subcommand(
      "report", "Write DIR/report.html: loss, throughput, per-stage time, a step's timeline and the plan of run "
                "directories (several DIRs: overlaid, the page goes into the first)");
  report_cmd->add_option("dirs", report_dirs, "Run directories (troupe train --run-dir DIR)")->required()->expected(1, -1);

  SampleCommandOptions sample;
  CLI::App* sample_cmd = add_sample_subcommand(app, sample);

  WeightsInput eval;
  CLI::App* eval_cmd = add_eval_subcommand(app, eval);

  BenchOptions bench;
  CLI::App* bench_cmd = add_bench_subcommand(app, bench);

  for (int i = 1; i < argc; ++i) train.args.emplace_back(argv[i]);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "troupe: error: %s (see troupe --help)\n", e.what());
    return 2;
  }

  try {
    if (train_cmd->parsed()) return run_train(train);
    if (report_cmd->parsed()) {
      std::printf("troupe: report written to %s\n", write_report(report_dirs).c_str());
      return 0;
    }
    if (sample_cmd->parsed()) return run_sample(sample);
    if (eval_cmd->parsed()) return run_eval(eval);
    if (bench_cmd->parsed()) return run_bench(bench, "/proc/self/exe");
    if (config_cmd->parsed()) {
      std::fputs((config_markdown_flag ? config_markdown() : config_help()).c_str(), stdout);
      return 0;
    }
    if (peak_cmd->parsed()) {
      const CpuPeak p = cpu_peak(peak_threads, peak_refresh);
      auto g = [](double flops) { return flops > 0 ? fmt::format("{:.1f} GFLOP/s", flops / 1e9) : std::string("n/a"); };
      std::printf("cpu              %s, %d threads\n", p.cpu.c_str(), p.threads);
      std::printf("f32 FMA loop     %s   (the f32 peak)\n", g(p.f32_fma).c_str());
      std::printf("bf16 dot loop    %s   (vdpbf16ps; the bf16 peak)\n", g(p.bf16_dot).c_str());
      std::printf("sgemm            %s   (256 x 1024 x 256 per thread, OpenBLAS)\n", g(p.sgemm).c_str());
      std::printf("bf16 product     %s   (256 x 1024 x 256 per thread, runtime/cpu/bf16_gemm.h)\n", g(p.bf16_gemm).c_str());
      std::printf("cached in        %s\n", cpu_peak_cache_path(p.cpu, p.threads).c_str());
      return 0;
    }
    if (devices_cmd->parsed()) {
      const DeviceInventory inv = query_devices();
      std::printf("cpu:0     %d hardware threads\n", inv.cpu_threads);
      std::printf("cuda      %s\n", inv.cuda_status.c_str());
      for (const auto& d : inv.cuda_devices)
        std::printf("cuda:%-4d %s, compute capability %d.%d, %.1f GiB\n", d.index, d.name.c_str(), d.compute_major,
                    d.compute_minor, static_cast<double>(d.memory_bytes) / (1024.0 * 1024.0 * 1024.0));
      return 0;
    }
  } catch (const Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "\ntroupe: error: %s\n", e.what());
    return e.is_bad_input() ? 2 : 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "\ntroupe: internal error: %s\n", e.what());
    return 1;
  }
  return 0;
}
