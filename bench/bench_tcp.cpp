// Owns the TCP transport benchmark: point-to-point bandwidth and ring allreduce bus bandwidth between separate processes (fork) or threads over loopback.
//
//   troupe_bench_tcp --op allreduce --ranks 4 --bytes 67108864 --iters 10 [--chunk 1048576] [--threads]
//   troupe_bench_tcp --op p2p --bytes 67108864 --iters 20
//
// Prints one JSON line per run: {"op":..., "ranks":..., "bytes":..., "chunk":..., "time_ms":...,
// "gbps":...}; for allreduce gbps is the bus bandwidth 2(n-1)/n * bytes / time (nccl-tests), for
// p2p it is bytes / time of a one-way stream from rank 0 to rank 1. Time is the median iteration
// after one warm-up.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "net/tcp/tcp_transport.h"
#include "runtime/comm/ring.h"

using namespace troupe;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  std::string op = "allreduce";
  int ranks = 4;
  std::size_t bytes = 64u << 20;
  int iters = 10;
  std::size_t chunk = std::size_t{1} << 20;
  bool threads = false;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// One rank's part; rank 0 prints the result.
void run_rank(const Args& a, net::TcpOptions options, net::TcpListener* listener) {
  auto t = listener ? net::connect_tcp(options, std::move(*listener)) : net::connect_tcp(options);
  std::vector<double> ms;
  if (a.op == "allreduce") {
    std::vector<float> data(a.bytes / sizeof(float), 1.0f);
    for (int i = 0; i <= a.iters; ++i) {
      const auto start = Clock::now();
      comm::allreduce_ring(*t, data);
      if (i) ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    }
  } else {  // p2p: rank 0 streams to rank 1, which acknowledges each message
    std::vector<std::byte> data(a.bytes);
    std::byte ack{};
    for (int i = 0; i <= a.iters; ++i) {
      const auto start = Clock::now();
      if (t->rank() == 0) {
        t->send(1, 1, data);
        t->recv(1, 2, std::span(&ack, 1));
      } else if (t->rank() == 1) {
        t->recv(0, 1, data);
        t->send(0, 2, std::span(&ack, 1));
      }
      if (i) ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    }
  }
  if (t->rank() != 0) return;
  const double time_ms = median(ms);
  const double n = a.ranks;
  const double moved = a.op == "allreduce" ? 2 * (n - 1) / n * static_cast<double>(a.bytes) : static_cast<double>(a.bytes);
  std::printf("{\"op\":\"%s\",\"ranks\":%d,\"bytes\":%zu,\"chunk\":%zu,\"mode\":\"%s\",\"time_ms\":%.3f,\"gbps\":%.3f}\n",
              a.op.c_str(), a.ranks, a.bytes, a.chunk, a.threads ? "threads" : "processes", time_ms,
              moved / (time_ms * 1e-3) / 1e9);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&] { return std::string(i + 1 < argc ? argv[++i] : ""); };
    if (k == "--op") a.op = next();
    else if (k == "--ranks") a.ranks = std::stoi(next());
    else if (k == "--bytes") a.bytes = std::stoull(next());
    else if (k == "--iters") a.iters = std::stoi(next());
    else if (k == "--chunk") a.chunk = std::stoull(next());
    else if (k == "--threads") a.threads = true;
    else {
      std::fprintf(stderr, "unknown argument %s\n", k.c_str());
      return 2;
    }
  }
  if (a.op == "p2p") a.ranks = 2;
  net::TcpListener listener("127.0.0.1:0");
  net::TcpOptions base;
  base.size = a.ranks;
  base.address = listener.address();
  base.secret = "bench";
  base.timeout = std::chrono::seconds(60);
  base.chunk_bytes = a.chunk;

  if (a.threads) {
    std::vector<std::thread> threads;
    for (int r = 0; r < a.ranks; ++r) {
      threads.emplace_back([&, r] {
        net::TcpOptions o = base;
        o.rank = r;
        run_rank(a, o, r == 0 ? &listener : nullptr);
      });
    }
    for (auto& t : threads) t.join();
    return 0;
  }
  std::vector<pid_t> children;
  for (int r = 0; r < a.ranks; ++r) {
    const pid_t pid = fork();
    if (pid == 0) {
      try {
        net::TcpOptions o = base;
        o.rank = r;
        run_rank(a, o, r == 0 ? &listener : nullptr);
        std::_Exit(0);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "rank %d: %s\n", r, e.what());
        std::_Exit(1);
      }
    }
    children.push_back(pid);
  }
  int failed = 0;
  for (pid_t pid : children) {
    int status = 0;
    waitpid(pid, &status, 0);
    failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  return failed ? 1 : 0;
}
