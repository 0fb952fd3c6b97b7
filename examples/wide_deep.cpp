// The recommender example: Wide & Deep or DeepFM (--model) on a synthetic click log, its embedding tables sharded across
// parameter-server actors, trained by worker threads — or, with --processes, worker processes over TCP
// links — in sync, async or SSP mode; reports test log-loss and AUC. Built in CI; the README quotes its output.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "actors/ps/ps_processes.h"
#include "actors/ps/wide_deep_ps.h"
#include "runtime/error.h"

int main(int argc, char** argv) {
  using namespace troupe;
  using namespace troupe::ps;
  CLI::App app{"troupe_wide_deep: Wide & Deep or DeepFM on a synthetic click log, trained against parameter-server actors.",
               "troupe_wide_deep"};
  std::string mode = "sync", optim = "adam", model = "wide_deep";
  int staleness = 0, workers = 2, shards = 2, batch = 256, threads = 1, embed_dim = 8;
  std::int64_t steps = 600, test_samples = 32768, max_card = 1000000;
  double lr = 0.01, timeout = 60.0;
  std::uint64_t seed = 1;
  bool json = false, processes = false;
  int rank = 0, max_restarts = 3;
  std::string address = "127.0.0.1:0";
  app.add_option("--model", model, "wide_deep | deepfm (first-order weights + FM + MLP over shared embeddings)")
      ->capture_default_str()
      ->check(CLI::IsMember(troupe::choice_names<troupe::RecommenderKind>()));
  app.add_option("--mode", mode, "sync | async | ssp")->capture_default_str();
  app.add_option("--staleness", staleness, "ssp: steps the fastest worker may run ahead of the slowest")->capture_default_str();
  app.add_option("--workers", workers, "worker threads")->capture_default_str();
  app.add_option("--shards", shards, "parameter-server shard actors")->capture_default_str();
  app.add_option("--steps", steps, "steps per worker")->capture_default_str();
  app.add_option("--batch", batch, "samples per worker and step (sync: the global batch is workers x batch)")->capture_default_str();
  app.add_option("--optim", optim, "sgd | adam | adamw | rmsprop (run by the shards)")
      ->capture_default_str()
      ->check(CLI::IsMember(troupe::choice_names<troupe::OptimKind>()));
  app.add_option("--lr", lr, "learning rate")->capture_default_str();
  app.add_option("--embed-dim", embed_dim, "embedding width per field")->capture_default_str();
  app.add_option("--max-cardinality", max_card, "ids of the largest field (the others: 1/10, 3/100, 1/100, 1/1000, 1/10000 of it)")
      ->capture_default_str();
  app.add_option("--test-samples", test_samples, "held-out samples evaluated at the end")->capture_default_str();
  app.add_option("--threads", threads, "compute threads per worker")->capture_default_str();
  app.add_option("--seed", seed, "data and initialisation")->capture_default_str();
  app.add_option("--timeout", timeout, "seconds a worker waits for a shard before failing")->capture_default_str();
  app.add_flag("--json", json, "print a final JSON line with the results");
  app.add_flag("--processes", processes, "workers as processes over TCP links to this one (which hosts the shards)");
  app.add_option("--address", address, "--processes: rendezvous host:port on loopback (port 0: any)")->capture_default_str();
  app.add_option("--max-restarts", max_restarts, "--processes: worker processes restarted after they die")->capture_default_str();
  app.add_option("--rank", rank, "(set by the example for the worker processes it starts)")->group("");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "troupe_wide_deep: error: %s (see --help)\n", e.what());
    return 2;
  }

  try {
    WideDeepPsOptions o;
    o.ps.mode = parse_mode(mode);
    o.ps.staleness = staleness;
    o.ps.workers = workers;
    o.ps.optim.kind = *parse_choice<OptimKind>(optim);  // CLI11 checked the name
    o.ps.optim.lr = lr;
    o.shards = shards;
    o.steps = steps;
    o.batch_size = batch;
    o.threads = threads;
    o.timeout_s = timeout;
    if (max_card < 10000)
      throw Error(ErrorKind::kConfig, "--max-cardinality " + std::to_string(max_card) + ": must be >= 10000");
    o.data.cardinalities = {max_card, max_card / 10, max_card * 3 / 100, max_card / 100, max_card / 1000, max_card / 10000};
    o.data.seed = seed;
    if (test_samples < 1) throw Error(ErrorKind::kConfig, "--test-samples " + std::to_string(test_samples) + ": must be >= 1");
    o.data.test_samples = test_samples;
    o.model.kind = *parse_choice<RecommenderKind>(model);  // CLI11 checked the name
    o.model.embed_dim = embed_dim;
    o.model.seed = seed;
    validate(o);
    std::unique_ptr<PsProcesses> procs;
    if (processes) {
      PsProcessOptions po;
      po.workers = workers;
      po.address = address;
      po.address_setting = "--address";
      po.timeout = std::chrono::milliseconds(static_cast<long long>(timeout * 1000));
      po.max_restarts = max_restarts;
      po.args.assign(argv + 1, argv + argc);
      procs = std::make_unique<PsProcesses>(rank, po);
      if (rank > 0) {  // a worker process: trains its slices and reports to rank 0, which prints
        train_wide_deep_ps(o, procs->links());
        return 0;
      }
    }
    std::printf("%s\n", ClickLog(o.data).describe().c_str());
    const bool deepfm = o.model.kind == RecommenderKind::deepfm;
    std::printf("%s: embeddings %d per field, MLP %d-64-32-1, %s %lld hashed rows; %s, %d workers x %d samples, %d shards, %s lr %g\n",
                deepfm ? "deepfm" : "wide & deep", embed_dim, static_cast<int>(o.data.cardinalities.size()) * embed_dim + o.data.dense_features,
                deepfm ? "FM over the embeddings, first-order table" : "wide table", static_cast<long long>(o.model.wide_buckets),
                std::string(name_of(o.ps.mode)).c_str(), workers, batch, shards, optim.c_str(), lr);
    std::fflush(stdout);
    const std::int64_t every = std::max<std::int64_t>(1, steps / 10);
    double window = 0;
    auto progress = [&](std::int64_t step, double loss) {
      window += loss;
      if ((step + 1) % every == 0 || step + 1 == steps) {
        const std::int64_t n = (step + 1) % every == 0 ? every : (step + 1) % every;
        std::printf("step %5lld  train loss %.4f (worker 0, mean of last %lld steps)\n", static_cast<long long>(step + 1), window / n,
                    static_cast<long long>(n));
        std::fflush(stdout);
        window = 0;
      }
    };
    if (procs) std::printf("workers 1..%d are processes (rendezvous %s)\n", workers - 1, procs->rendezvous().c_str());
    const WideDeepPsResult r = procs ? train_wide_deep_ps(o, procs->links(), progress) : train_wide_deep_ps(o, progress);
    std::printf("trained %lld steps in %.2f s: %.0f samples/s; optimizer state on the shards %.1f MiB\n",
                static_cast<long long>(steps), r.seconds, r.samples_per_s, static_cast<double>(r.state_bytes) / (1 << 20));
    std::printf("test (%lld held-out samples): log-loss %.4f  AUC %.4f   (hidden model: log-loss %.4f  AUC %.4f)\n",
                static_cast<long long>(r.eval_samples), r.test_log_loss, r.test_auc, r.oracle_log_loss, r.oracle_auc);
    if (json)
      std::printf("{\"model\":\"%s\",\"mode\":\"%s\",\"staleness\":%d,\"workers\":%d,\"shards\":%d,\"steps\":%lld,\"batch\":%d,\"samples_per_s\":%.1f,"
                  "\"test_log_loss\":%.5f,\"test_auc\":%.5f,\"oracle_auc\":%.5f}\n",
                  std::string(name_of(o.model.kind)).c_str(), std::string(name_of(o.ps.mode)).c_str(), staleness, workers, shards, static_cast<long long>(steps), batch, r.samples_per_s,
                  r.test_log_loss, r.test_auc, r.oracle_auc);
    if (procs) {
      const std::string failure = procs->wait_all();
      if (!failure.empty()) throw Error(ErrorKind::kIo, "worker " + failure);
    }
  } catch (const Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "troupe_wide_deep: error: %s%s\n", rank > 0 ? ("worker " + std::to_string(rank) + ": ").c_str() : "",
                 e.what());
    return e.is_bad_input() ? 2 : 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "troupe_wide_deep: internal error: %s\n", e.what());
    return 1;
  }
  return 0;
}
