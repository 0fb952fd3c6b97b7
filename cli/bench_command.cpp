// `troupe bench allreduce`: ranks as threads (inproc) or processes (tcp, shm), warm-up, timed iterations, a correctness check, one JSON line.
#include "cli/bench_command.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <csignal>
#include <cstdlib>
#include <exception>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "net/inproc/inproc_transport.h"
#include "net/routed/routed_transport.h"
#include "net/shm/shm_transport.h"
#include "net/tcp/address.h"
#include "net/tcp/tcp_transport.h"
#include "runtime/comm/allreduce.h"
#include "runtime/comm/direct.h"
#include "runtime/comm/hierarchical.h"
#include "runtime/comm/local_group.h"
#include "runtime/error.h"
#include "runtime/launch/join_spec.h"

namespace troupe {

namespace {

using Clock = std::chrono::steady_clock;

void check_options(const BenchOptions& o) {
  if (o.op != "allreduce")
    throw Error(ErrorKind::kUsage, "troupe bench: unknown collective '" + o.op + "'; only allreduce is benchmarked");
  if (o.ranks < 1) throw Error(ErrorKind::kUsage, fmt::format("--ranks {}: need at least 1 rank", o.ranks));
  if (o.iters < 1) throw Error(ErrorKind::kUsage, fmt::format("--iters {}: need at least 1 timed iteration", o.iters));
  if (o.warmup < 1) throw Error(ErrorKind::kUsage, fmt::format("--warmup {}: need at least 1 (it is checked)", o.warmup));
  if (o.transport != "inproc" && o.transport != "tcp" && o.transport != "shm" && o.transport != "hosts")
    throw Error(ErrorKind::kUsage, "--transport " + o.transport + ": choose inproc, tcp, shm or hosts");
  if (o.rank >= 0 && (o.transport == "inproc" || o.rank >= o.ranks || o.port <= 0))
    throw Error(ErrorKind::kUsage, "--rank and --port are set by troupe bench itself for its tcp and shm child processes");
  if (o.algo == "local") {
    if (o.transport != "inproc")
      throw Error(ErrorKind::kUsage, "--algo local: reads the other ranks' buffers by reference, so only with --transport inproc");
  } else if (o.algo == "hier") {
    if (o.transport != "hosts")
      throw Error(ErrorKind::kUsage, "--algo hier: sums inside each host first, so only with --transport hosts");
  } else if (o.algo != "direct") {
    comm::parse_allreduce_algo(o.algo);
  }
}

// With inproc, auto means the by-reference LocalGroup (what ranks sharing a process use); ring and hd
// force messages through the in-process Transport.
bool by_reference(const BenchOptions& o) { return o.transport == "inproc" && (o.algo == "auto" || o.algo == "local"); }

// Rank r's input: small integers, so every partial sum is exact in float and any correct algorithm,
// in any order, gives exactly sum_r value(r, i).
float value(int rank, std::size_t i) { return static_cast<float>(static_cast<int>((i * 7 + static_cast<std::size_t>(rank) * 13) % 61) - 30); }

void fill(std::vector<float>& data, int rank) {
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = value(rank, i);
}

// Every element must be the exact sum: a fast but wrong run fails here. value() repeats every 61
// elements, so the expected sums are a table of 61.
void verify(const std::vector<float>& data, int rank, int ranks, const char* when) {
  float expected[61];
  for (std::size_t i = 0; i < 61; ++i) {
    expected[i] = 0.0f;
    for (int r = 0; r < ranks; ++r) expected[i] += value(r, i);
  }
  for (std::size_t i = 0; i < data.size(); ++i) {
    if (data[i] != expected[i % 61])
      throw Error(ErrorKind::kInternal, fmt::format("bench allreduce: wrong result on rank {} {}: element {} is {}, "
                                                    "expected {}", rank, when, i, data[i], expected[i % 61]));
  }
}

// One rank's whole run over `reduce` (an allreduce of the whole buffer); returns the seconds per timed
// iteration (meaningful on rank 0). `barrier` must synchronise all ranks.
template <class Reduce, class Barrier>
double run_rank(int rank, int ranks, const BenchOptions& o, std::size_t elements, Reduce reduce, Barrier barrier) {
  std::vector<float> data(elements);
  fill(data, rank);
  reduce(std::span<float>(data));
  verify(data, rank, ranks, "in the first warm-up iteration");
  for (int i = 1; i < o.warmup; ++i) reduce(std::span<float>(data));

  barrier();
  const auto start = Clock::now();
  std::vector<double> each;  // this rank's iterations, for the spread line on stderr
  // In place, as gradients are reduced; the values grow (possibly to inf), which costs float adds nothing.
  for (int i = 0; i < o.iters; ++i) {
    const auto t0 = Clock::now();
    reduce(std::span<float>(data));
    each.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  barrier();  // the slowest rank's finish
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count() / o.iters;
  if (rank == 0) {
    // On a shared machine the fastest iteration says more about the algorithm than the mean does.
    std::sort(each.begin(), each.end());
    std::fprintf(stderr, "troupe bench: rank 0 iterations: min %.3f ms, median %.3f ms, max %.3f ms\n", each.front() * 1e3,
                 each[each.size() / 2] * 1e3, each.back() * 1e3);
  }

  fill(data, rank);
  reduce(std::span<float>(data));
  verify(data, rank, ranks, "after the timed iterations");
  return seconds;
}

// run_rank over a Transport with the algorithm of --algo; `host_of` (hosts mode): each rank's host.
double run_transport_rank(comm::Transport& t, const BenchOptions& o, std::size_t elements,
                          const std::vector<int>& host_of = {}) {
  if (o.algo == "hier" || (o.algo == "auto" && !host_of.empty() && comm::hierarchy_pays(host_of))) {
    std::vector<float> token(1);
    comm::HierarchicalOptions hier;
    if (o.segment_kib) hier.block_bytes = o.segment_kib << 10;
    return run_rank(
        t.rank(), t.size(), o, elements, [&](std::span<float> d) { comm::allreduce_hierarchical<float>(t, d, host_of, hier); },
        [&] { comm::allreduce(t, std::span<float>(token), comm::AllreduceAlgo::kHalvingDoubling); });
  }
  if (o.algo == "direct") {  // direct.h: reduce-scatter and all-gather, one round each, all peers at once
    const auto ranges = comm::equal_ranges(elements, t.size());
    std::vector<float> token(1);
    return run_rank(
        t.rank(), t.size(), o, elements,
        [&](std::span<float> d) {
          comm::reduce_scatter_direct<float>(t, d, ranges);
          comm::all_gather_direct<float>(t, d, ranges);
        },
        [&] { comm::allreduce(t, std::span<float>(token), comm::AllreduceAlgo::kHalvingDoubling); });
  }
  const comm::AllreduceAlgo algo = comm::parse_allreduce_algo(o.algo);
  comm::RingOptions ring;
  if (o.segment_kib) ring.segment_bytes = o.segment_kib << 10;
  std::vector<float> token(1);
  return run_rank(
      t.rank(), t.size(), o, elements, [&](std::span<float> d) { comm::allreduce(t, d, algo, ring); },
      [&] { comm::allreduce(t, std::span<float>(token), comm::AllreduceAlgo::kHalvingDoubling); });
}

double run_inproc(const BenchOptions& o, std::size_t elements) {
  net::InprocWorld world(o.ranks, std::chrono::seconds(120));
  comm::LocalGroup group(o.ranks, std::chrono::seconds(120));
  std::vector<double> seconds(static_cast<std::size_t>(o.ranks));
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(o.ranks));
  std::vector<std::thread> threads;
  for (int r = 0; r < o.ranks; ++r) {
    threads.emplace_back([&, r, t = world.transport(r)] {
      try {
        std::vector<float> token(1);
        seconds[static_cast<std::size_t>(r)] =
            by_reference(o) ? run_rank(
                                  r, o.ranks, o, elements, [&](std::span<float> d) { group.allreduce(r, d); },
                                  [&] { group.allreduce(r, std::span<float>(token)); })
                            : run_transport_rank(*t, o, elements);
      } catch (...) {
        errors[static_cast<std::size_t>(r)] = std::current_exception();
        world.kill(r);  // the others fail at once instead of waiting for the timeout
        group.kill(r);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  return seconds[0];
}


// --- tcp and shm: rank 0 is this process; ranks 1..n-1 are children (this program with hidden --rank/--port).

extern "C" char** environ;

std::string random_secret() {
  std::random_device rd;
  return fmt::format("{:08x}{:08x}{:08x}{:08x}", rd(), rd(), rd(), rd());
}

net::TcpOptions tcp_options(int rank, int ranks, int port, net::tcp::Protection protection) {
  net::TcpOptions t;
  // Loopback links are left unprotected by default: --protection asks for it on every link.
  t.integrity = protection == net::tcp::Protection::off ? IntegrityPolicy::off : IntegrityPolicy::on;
  t.encrypt = protection == net::tcp::Protection::encrypt;
  t.rank = rank;
  t.size = ranks;
  t.address = fmt::format("127.0.0.1:{}", port);
  t.secret = net::secret_from_environment();
  t.timeout = std::chrono::seconds(120);
  return t;
}

// Rank `rank`'s transport of --transport tcp or shm; rank 0 passes its listener.
std::unique_ptr<comm::Transport> connect_rank(const BenchOptions& o, int rank, int port, net::TcpListener* listener) {
  const net::TcpOptions tcp = tcp_options(rank, o.ranks, port, o.protection);
  if (o.transport == "shm") {
    net::ShmOptions shm{.tcp = tcp};
    if (o.shm_slots) shm.slots = o.shm_slots;
    if (o.shm_piece_kib) shm.piece_bytes = o.shm_piece_kib << 10;
    if (o.shm_pieces) shm.pieces = o.shm_pieces;
    return listener ? net::connect_shm(shm, std::move(*listener)) : net::connect_shm(shm);
  }
  return listener ? net::connect_tcp(tcp, std::move(*listener)) : net::connect_tcp(tcp);
}

// A child rank: joins the mesh, runs, exits 0 (errors propagate to main's handler: exit code != 0).
int run_tcp_child(const BenchOptions& o, std::size_t elements) {
  auto transport = connect_rank(o, o.rank, o.port, nullptr);
  run_transport_rank(*transport, o, elements);
  return 0;
}

double run_tcp_parent(const BenchOptions& o, std::size_t elements, const std::string& self) {
  net::TcpListener listener("127.0.0.1:0");
  const int port = listener.port();
  ::setenv("TROUPE_SECRET", random_secret().c_str(), 1);  // inherited by the children only
  std::vector<pid_t> children;
  auto reap = [&](bool kill_them) {
    int failed = 0;
    for (pid_t pid : children) {
      if (kill_them) ::kill(pid, SIGTERM);  // only the children this process started
      int status = 0;
      ::waitpid(pid, &status, 0);
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
    }
    children.clear();
    return failed;
  };
  try {
    for (int r = 1; r < o.ranks; ++r) {
      std::vector<std::string> args = {self, "bench", o.op, "--ranks", std::to_string(o.ranks), "--bytes", o.bytes,
                                       "--transport", o.transport, "--iters", std::to_string(o.iters), "--warmup",
                                       std::to_string(o.warmup), "--algo", o.algo, "--segment-kib",
                                       std::to_string(o.segment_kib), "--shm-slots", std::to_string(o.shm_slots), "--shm-piece-kib",
                                       std::to_string(o.shm_piece_kib), "--shm-pieces", std::to_string(o.shm_pieces), "--protection",
                                       net::tcp::protection_name(o.protection), "--rank", std::to_string(r), "--port",
                                       std::to_string(port)};
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      pid_t pid = 0;
      if (int err = ::posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv.data(), environ); err != 0)
        throw Error(ErrorKind::kIo, fmt::format("bench: cannot start rank {} ({}): {}", r, self, std::strerror(err)));
      children.push_back(pid);
    }
    auto transport = connect_rank(o, 0, port, &listener);
    const double seconds = run_transport_rank(*transport, o, elements);
    transport.reset();  // goodbye to every child before waiting for them
    if (const int failed = reap(false))
      throw Error(ErrorKind::kIo, fmt::format("bench: {} of the {} child ranks failed (see their errors above)", failed,
                                              o.ranks - 1));
    return seconds;
  } catch (...) {
    reap(true);
    throw;
  }
}

// --- hosts: this process is one rank of a job a launcher started (its variables, as troupe train reads them).

struct HostsRun {
  int rank = 0;
  double seconds = 0;
  int ranks = 0;
  int hosts = 0;
  std::string algo;
};

HostsRun run_hosts(const BenchOptions& o, std::size_t elements) {
  const std::optional<launcher::JoinSpec> join = launcher::resolve_join({}, launcher::process_environment());
  if (!join || join->world_size < 2)
    throw Error(ErrorKind::kUsage, "--transport hosts: this process is one rank of a job a launcher started; set RANK, "
                                   "WORLD_SIZE (>= 2), MASTER_ADDR, MASTER_PORT and TROUPE_SECRET (or run it under srun or "
                                   "mpirun with MASTER_ADDR), as for troupe train (docs/multi-host.md)");
  net::ShmOptions so;
  so.tcp.rank = join->rank;
  so.tcp.size = join->world_size;
  so.tcp.address = join->address;
  so.tcp.reach = net::Reach::network;
  so.tcp.interface = o.interface;
  so.tcp.secret = net::secret_from_environment();
  so.tcp.timeout = std::chrono::seconds(120);
  std::unique_ptr<net::RoutedTransport> t;
  if (join->rank == 0) {  // listens on every interface (or comm.interface's address) at MASTER_PORT
    t = net::connect_routed(so, net::TcpListener(net::tcp::rank0_listen_address(join->address, o.interface), net::Reach::network));
  } else {
    t = net::connect_routed(so);
  }
  const std::vector<int> host_of = comm::host_indices(t->hostnames());
  HostsRun run;
  run.rank = t->rank();
  run.ranks = t->size();
  run.hosts = static_cast<int>(comm::host_leaders(host_of).size());
  run.algo = o.algo == "hier" || (o.algo == "auto" && comm::hierarchy_pays(host_of)) ? "hier" : o.algo;
  run.seconds = run_transport_rank(*t, o, elements, host_of);
  return run;
}

}  // namespace

CLI::App* add_bench_subcommand(CLI::App& app, BenchOptions& o) {
  CLI::App* cmd = app.add_subcommand("bench", "Benchmark a collective: troupe bench allreduce --ranks 4 --bytes 64MiB --transport tcp");
  cmd->add_option("op", o.op, "The collective: allreduce")->required();
  cmd->add_option("--ranks", o.ranks, "Ranks (threads for inproc, processes for tcp and shm)");
  cmd->add_option("--bytes", o.bytes, "Buffer size: 67108864, 64MiB, 16K, ...");
  cmd->add_option("--transport", o.transport,
                  "inproc (threads of this process), tcp (processes over loopback), shm (processes over shared memory) or "
                  "hosts (this process is one rank a launcher started, its variables as for troupe train: shared memory "
                  "inside a host, tcp between hosts)");
  cmd->add_option("--iters", o.iters, "Timed iterations");
  cmd->add_option("--warmup", o.warmup, "Untimed iterations before them (the first is checked)");
  cmd->add_option("--algo", o.algo, "auto, ring, hd (recursive halving-doubling), direct (direct.h reduce-scatter + all-gather), "
                  "shm (shm only: the shared-memory allreduce, the ring's sums without messages), "
                  "local (inproc only: by reference) or hier (hosts only: inside each host, across hosts, back). auto: local "
                  "for inproc, by size for tcp and shm (shm: the shared-memory allreduce where it would take the ring), "
                  "hier for hosts when several hosts hold several ranks");
  cmd->add_option("--interface", o.interface, "hosts: the network interface ranks listen on and advertise (as comm.interface)");
  cmd->add_option("--segment-kib", o.segment_kib, "Ring segment (hier: block) size in KiB (0: the default)");
  cmd->add_option("--shm-slots", o.shm_slots, "shm: slots of 1 MiB per ring (0: the default, 4)");
  cmd->add_option("--shm-piece-kib", o.shm_piece_kib,
                  "shm: KiB per staging piece of the shared-memory allreduce (0: the default, 256)");
  cmd->add_option("--shm-pieces", o.shm_pieces, "shm: staging pieces per rank of the shared-memory allreduce (0: the default, 4)");
  cmd->add_option_function<std::string>(
         "--protection",
         [&o](const std::string& name) {
           for (auto level : {net::tcp::Protection::off, net::tcp::Protection::integrity, net::tcp::Protection::encrypt})
             if (name == net::tcp::protection_name(level)) o.protection = level;
         },
         "tcp: protect every link's frames even on loopback: off, integrity (AES-256-GCM seal per frame) or "
         "encrypt (AES-256-GCM encryption too); comm.integrity and comm.encrypt in a run")
      ->check(CLI::IsMember({"off", "integrity", "encrypt"}));
  cmd->add_option("--rank", o.rank)->group("");  // hidden: set by the tcp parent for its children
  cmd->add_option("--port", o.port)->group("");
  cmd->footer("Prints one JSON line: {\"op\",\"ranks\",\"bytes\",\"transport\",\"protection\",\"time_ms\",\"busbw_gbps\"}, "
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

  if (o.rank >= 0) return run_tcp_child(o, elements);  // a child started by run_tcp_parent
  if (o.transport == "hosts") {
    const HostsRun run = run_hosts(o, elements);
    if (run.rank != 0) return 0;  // rank 0 reports
    const double n = run.ranks;
    std::printf("{\"op\":\"allreduce\",\"ranks\":%d,\"hosts\":%d,\"algo\":\"%s\",\"bytes\":%zu,\"transport\":\"hosts\","
                "\"time_ms\":%.4f,\"busbw_gbps\":%.4f}\n",
                run.ranks, run.hosts, run.algo.c_str(), bytes, run.seconds * 1e3, 2.0 * (n - 1.0) / n * static_cast<double>(bytes) / run.seconds / 1e9);
    std::fflush(stdout);
    return 0;
  }
  const double seconds = o.transport == "inproc" ? run_inproc(o, elements) : run_tcp_parent(o, elements, self);
  const double n = o.ranks;
  const double busbw = seconds > 0 ? 2.0 * (n - 1.0) / n * static_cast<double>(bytes) / seconds / 1e9 : 0.0;
  std::printf("{\"op\":\"allreduce\",\"ranks\":%d,\"bytes\":%zu,\"transport\":\"%s\",\"protection\":\"%s\",\"time_ms\":%.4f,"
              "\"busbw_gbps\":%.4f}\n",
              o.ranks, bytes, o.transport.c_str(), net::tcp::protection_name(o.protection), seconds * 1e3, busbw);
  std::fflush(stdout);
  return 0;
}

}  // namespace troupe
