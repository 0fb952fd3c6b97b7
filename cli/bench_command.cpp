// `troupe bench allreduce`: ranks as threads (inproc) or processes (tcp), warm-up, timed iterations, a correctness check, one JSON line.
#include "cli/bench_command.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "net/inproc/inproc_transport.h"
#include "runtime/comm/allreduce.h"
#include "runtime/error.h"

namespace troupe {

namespace {

using Clock = std::chrono::steady_clock;

void check_options(const BenchOptions& o) {
  if (o.op != "allreduce")
    throw Error(ErrorKind::kUsage, "troupe bench: unknown collective '" + o.op + "'; only allreduce is benchmarked");
  if (o.ranks < 1) throw Error(ErrorKind::kUsage, fmt::format("--ranks {}: need at least 1 rank", o.ranks));
  if (o.iters < 1) throw Error(ErrorKind::kUsage, fmt::format("--iters {}: need at least 1 timed iteration", o.iters));
  if (o.warmup < 1) throw Error(ErrorKind::kUsage, fmt::format("--warmup {}: need at least 1 (it is checked)", o.warmup));
  if (o.transport != "inproc" && o.transport != "tcp")
    throw Error(ErrorKind::kUsage, "--transport " + o.transport + ": choose inproc or tcp");
  comm::parse_allreduce_algo(o.algo);
}

// Rank r's input: small integers, so every partial sum is exact in float and any correct algorithm,
// in any order, gives exactly sum_r value(r, i).
float value(int rank, std::size_t i) { return static_cast<float>(static_cast<int>((i * 7 + static_cast<std::size_t>(rank) * 13) % 61) - 30); }

void fill(std::vector<float>& data, int rank) {
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = value(rank, i);
}

// Every element must be the exact sum: a fast but wrong run fails here.
void verify(const std::vector<float>& data, int rank, int ranks, const char* when) {
  for (std::size_t i = 0; i < data.size(); ++i) {
    float expected = 0.0f;
    for (int r = 0; r < ranks; ++r) expected += value(r, i);
    if (data[i] != expected)
      throw Error(ErrorKind::kInternal, fmt::format("bench allreduce: wrong result on rank {} {}: element {} is {}, "
                                                    "expected {}", rank, when, i, data[i], expected));
  }
}

// One rank's whole run; returns the seconds per timed iteration (meaningful on rank 0).
double run_rank(comm::Transport& t, const BenchOptions& o, std::size_t elements) {
  const comm::AllreduceAlgo algo = comm::parse_allreduce_algo(o.algo);
  comm::RingOptions ring;
  if (o.segment_kib) ring.segment_bytes = o.segment_kib << 10;
  std::vector<float> data(elements);
  std::vector<float> token(1);
  auto barrier = [&] { comm::allreduce(t, std::span<float>(token), comm::AllreduceAlgo::kHalvingDoubling); };

  fill(data, t.rank());
  comm::allreduce(t, std::span<float>(data), algo, ring);
  verify(data, t.rank(), t.size(), "in the first warm-up iteration");
  for (int i = 1; i < o.warmup; ++i) comm::allreduce(t, std::span<float>(data), algo, ring);

  barrier();
  const auto start = Clock::now();
  // In place, as gradients are reduced; the values grow (possibly to inf), which costs float adds nothing.
  for (int i = 0; i < o.iters; ++i) comm::allreduce(t, std::span<float>(data), algo, ring);
  barrier();  // the slowest rank's finish
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count() / o.iters;

  fill(data, t.rank());
  comm::allreduce(t, std::span<float>(data), algo, ring);
  verify(data, t.rank(), t.size(), "after the timed iterations");
  return seconds;
}

double run_inproc(const BenchOptions& o, std::size_t elements) {
  net::InprocWorld world(o.ranks, std::chrono::seconds(120));
  std::vector<double> seconds(static_cast<std::size_t>(o.ranks));
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(o.ranks));
  std::vector<std::thread> threads;
  for (int r = 0; r < o.ranks; ++r) {
    threads.emplace_back([&, r, t = world.transport(r)] {
      try {
        seconds[static_cast<std::size_t>(r)] = run_rank(*t, o, elements);
      } catch (...) {
        errors[static_cast<std::size_t>(r)] = std::current_exception();
        world.kill(r);  // the others fail at once instead of waiting for the timeout
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  return seconds[0];
}

}  // namespace

CLI::App* add_bench_subcommand(CLI::App& app, BenchOptions& o) {
  CLI::App* cmd = app.add_subcommand("bench", "Benchmark a collective: troupe bench allreduce --ranks 4 --bytes 64MiB --transport tcp");
  cmd->add_option("op", o.op, "The collective: allreduce")->required();
  cmd->add_option("--ranks", o.ranks, "Ranks (threads for inproc, processes for tcp)");
  cmd->add_option("--bytes", o.bytes, "Buffer size: 67108864, 64MiB, 16K, ...");
  cmd->add_option("--transport", o.transport, "inproc (threads of this process) or tcp (processes over loopback)");
  cmd->add_option("--iters", o.iters, "Timed iterations");
  cmd->add_option("--warmup", o.warmup, "Untimed iterations before them (the first is checked)");
  cmd->add_option("--algo", o.algo, "auto (by size), ring or hd (recursive halving-doubling)");
  cmd->add_option("--segment-kib", o.segment_kib, "Ring segment size in KiB (0: the default)");
  cmd->add_option("--rank", o.rank)->group("");  // hidden: set by the tcp parent for its children
  cmd->add_option("--port", o.port)->group("");
  cmd->footer("Prints one JSON line: {\"op\",\"ranks\",\"bytes\",\"transport\",\"time_ms\",\"busbw_gbps\"}, "
              "busbw = 2(n-1)/n * bytes / time (nccl-tests). Every rank checks the result.");
  return cmd;
}

std::size_t parse_byte_size(const std::string& text) {
  std::size_t pos = 0;
  unsigned long long n = 0;
  try {
    n = std::stoull(text, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  const std::string suffix = text.substr(pos);
  std::size_t scale = 0;
  if (suffix.empty() || suffix == "B") scale = 1;
  else if (suffix == "K" || suffix == "KiB") scale = std::size_t{1} << 10;
  else if (suffix == "M" || suffix == "MiB") scale = std::size_t{1} << 20;
  else if (suffix == "G" || suffix == "GiB") scale = std::size_t{1} << 30;
  if (pos == 0 || scale == 0 || text[0] == '-')
    throw Error(ErrorKind::kUsage, "--bytes " + text + ": give a byte count such as 67108864, 64MiB or 16K");
  return static_cast<std::size_t>(n) * scale;
}

int run_bench(const BenchOptions& o, const std::string& self) {
  check_options(o);
  const std::size_t bytes = parse_byte_size(o.bytes);
  if (bytes % sizeof(float) != 0)
    throw Error(ErrorKind::kUsage, fmt::format("--bytes {}: the buffer holds floats, give a multiple of 4", bytes));
  const std::size_t elements = bytes / sizeof(float);

  double seconds = 0.0;
  if (o.transport == "inproc") {
    seconds = run_inproc(o, elements);
  } else {
    throw Error(ErrorKind::kUsage, "--transport tcp: not available yet in this build; use --transport inproc");
  }
  (void)self;
  const double n = o.ranks;
  const double busbw = seconds > 0 ? 2.0 * (n - 1.0) / n * static_cast<double>(bytes) / seconds / 1e9 : 0.0;
  std::printf("{\"op\":\"allreduce\",\"ranks\":%d,\"bytes\":%zu,\"transport\":\"%s\",\"time_ms\":%.4f,\"busbw_gbps\":%.4f}\n",
              o.ranks, bytes, o.transport.c_str(), seconds * 1e3, busbw);
  std::fflush(stdout);
  return 0;
}

}  // namespace troupe
