// Owns `troupe bench`: collective benchmarks (allreduce over the in-process, TCP or shared-memory transport) printing one JSON result line.
#pragma once

#include <cstddef>
#include <string>

#include "net/tcp/link_security.h"

namespace CLI {
class App;
}

namespace troupe {

struct BenchOptions {
  std::string op = "allreduce";      // the collective (only allreduce for now)
  int ranks = 2;                     // >= 1
  std::string bytes = "64MiB";       // buffer size: a byte count, or with a KiB/MiB/GiB (or K/M/G) suffix
  std::string transport = "inproc";  // inproc (ranks as threads) | tcp (processes on loopback) | shm (processes, shared memory)
                                     // | hosts (processes a launcher started, on any hosts: shm inside a host, tcp between)
  int iters = 10;                    // timed iterations (>= 1)
  int warmup = 3;                    // untimed iterations first (>= 1: the first one is also checked)
  std::string algo = "auto";         // auto | ring | hd | direct | local (inproc: by reference, comm::LocalGroup)
                                     // | hier (hosts: runtime/comm/hierarchical.h)
  std::string interface;             // hosts: the interface ranks listen on and advertise (comm.interface)
  std::size_t segment_kib = 0;       // ring segment size in KiB; 0 = the default (kRingSegmentBytes)
  std::size_t shm_slots = 0;         // shm: slots per ring; 0 = ShmOptions' default
  std::size_t shm_piece_kib = 0;     // shm: the allreduce's staging piece in KiB; 0 = ShmOptions' default
  std::size_t shm_pieces = 0;        // shm: staging pieces per rank; 0 = ShmOptions' default
  // tcp: every link's frames protected at this level (net/tcp/link_security.h), loopback or not
  net::tcp::Protection protection = net::tcp::Protection::off;
  // Hidden, for the child processes the tcp and shm modes spawn: this process's rank and the rendezvous.
  int rank = -1;
  int port = 0;
};

// Adds `bench` (its options bound to `options`) to the program; returns the subcommand.
CLI::App* add_bench_subcommand(CLI::App& app, BenchOptions& options);

// Parses "67108864", "64MiB", "64M", "16KiB", ... into bytes; throws troupe::Error(kUsage) otherwise.
std::size_t parse_byte_size(const std::string& text);

// Runs the benchmark; prints progress to stderr and the final JSON line to stdout; returns the exit
// code. `self` is this program's path (the tcp mode runs one copy of it per rank). Throws troupe::Error
// for bad options and for a wrong result.
int run_bench(const BenchOptions& options, const std::string& self);

}  // namespace troupe
