// Owns the `troupe train` tests of ranks a launcher starts, over loopback (no namespace, no root): torchrun's variables give a job bitwise equal to one device, and every bad launch is a config error that says what to do.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/same_weights.h"
#include "tests/temp_dir.h"
#include "tests/troupe_command.h"

using Catch::Matchers::Contains;

namespace {

const std::string kSmall =
    "train --steps 3 --set model.n_layer=2 --set model.n_embd=32 --set model.n_head=2 --set model.block_size=16 "
    "--set train.batch_size=9 --set train.eval_every=0 --set train.eval_batches=1 --set data.order=sequential "
    "--set train.deterministic=true --set train.threads=1 ";

// A port P where P and P + 1 (a 2-stage pipeline's second rendezvous) are free on every interface, the ranks
// binding them moments later. Drawn below the kernel's ephemeral range (32768 up), so that no outgoing
// connection of a test running beside this one can take it in between, as a port the kernel picks could be.
int free_port() {
  auto free_now = [](int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
  };
  std::random_device seed;
  std::mt19937 draw(seed());
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const int port = 20000 + static_cast<int>(draw() % 12000);
    if (free_now(port) && free_now(port + 1)) return port;
  }
  FAIL("no two free neighbouring ports in 20000..32000");
  return 0;
}

// Runs `world` ranks of kSmall + `extra` with torchrun's variables over loopback, rank 0 saving to
// `weights`; returns each rank's run.
std::vector<TroupeRun> run_joined(const TempDir& dir, int world, const std::string& extra, const std::string& weights) {
  const std::string common = "TROUPE_SECRET=cli-test WORLD_SIZE=" + std::to_string(world) +
                             " MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(free_port()) + " ";
  std::vector<std::thread> others;
  std::vector<TroupeRun> results(static_cast<std::size_t>(world));
  for (int r = 1; r < world; ++r) {
    const std::string scratch = dir.file("r" + std::to_string(r));
    std::filesystem::create_directories(scratch);
    others.emplace_back([&, r, scratch] { results[r] = run_troupe(scratch, kSmall + extra, common + "RANK=" + std::to_string(r)); });
  }
  results[0] = run_troupe(dir.path, kSmall + extra + " --save " + weights, common + "RANK=0");
  for (auto& t : others) t.join();
  for (int r = 0; r < world; ++r) {
    INFO("rank " << r << ": " << results[r].err);
    CHECK(results[r].code == 0);
  }
  return results;
}

}  // namespace

TEST_CASE("ranks started with torchrun's variables form one job, bitwise equal to one device", "[launch][cli]") {
  TempDir dir;
  REQUIRE(run_troupe(dir.path, kSmall + "--save " + dir.file("single.st")).code == 0);
  const std::vector<TroupeRun> results = run_joined(dir, 3, "", dir.file("joined.st"));
  CHECK_THAT(results[0].out, Contains("3 replicas as processes a launcher started"));
  CHECK_THAT(results[0].out, Contains("ranks on 1 host: "));
  // One host: every pair through shared memory, chosen from the hosts the ranks reported; one host needs no hierarchy.
  CHECK_THAT(results[0].out, Contains("within a host through shared memory, between hosts over tcp\n"));
  CHECK(results[1].out.find("step 1/3") == std::string::npos);  // rank 0 reports for everyone
  check_same_weights(dir.file("single.st"), dir.file("joined.st"));

  // Each process one replica of a 2-stage pipeline: one rendezvous port per stage.
  const std::string pipeline = "--set parallel.pipeline=2 --set parallel.microbatches=3";
  REQUIRE(run_troupe(dir.path, kSmall + pipeline + " --save " + dir.file("single_pp.st")).code == 0);
  const std::vector<TroupeRun> pp = run_joined(dir, 3, pipeline, dir.file("joined_pp.st"));
  CHECK_THAT(pp[0].out, Contains("x 2 pipeline stages"));
  check_same_weights(dir.file("single_pp.st"), dir.file("joined_pp.st"));

  // comm.same_host = tcp: plain TCP between the co-located ranks, the same bits.
  const std::vector<TroupeRun> tcp = run_joined(dir, 3, "--set comm.same_host=tcp", dir.file("joined_tcp.st"));
  CHECK_THAT(tcp[0].out, Contains("every pair of ranks over tcp (comm.same_host = tcp)"));
  check_same_weights(dir.file("single.st"), dir.file("joined_tcp.st"));
}

TEST_CASE("a bad launch is a config error that says what to set", "[launch][cli]") {
  TempDir dir;
  const auto error_of_run = [&](const std::string& env, const std::string& extra = "") {
    const TroupeRun r = run_troupe(dir.path, kSmall + extra, env);
    INFO(r.out << r.err);
    CHECK(r.code == 2);
    return r.err;
  };
  CHECK_THAT(error_of_run("RANK=1"), Contains("RANK is set but WORLD_SIZE is not"));
  CHECK_THAT(error_of_run("OMPI_COMM_WORLD_RANK=1 OMPI_COMM_WORLD_SIZE=2"),
             Contains("OpenMPI makes this process rank 1 of 2, but nothing says where rank 0 listens"));
  CHECK_THAT(error_of_run("TROUPE_SECRET= RANK=1 WORLD_SIZE=3 MASTER_ADDR=127.0.0.1"), Contains("TROUPE_SECRET is not set"));
  CHECK_THAT(error_of_run("RANK=0 WORLD_SIZE=3 MASTER_ADDR=127.0.0.1", "--set parallel.data=9"),
             Contains("torchrun started this process as rank 0 of 3, but parallel.data = 9"));
  CHECK_THAT(error_of_run("RANK=0 WORLD_SIZE=3 MASTER_ADDR=127.0.0.1", "--set comm.transport=inproc"), Contains("comm.transport = inproc"));
  // Ranks troupe starts itself stay on this machine: a host beyond loopback is refused before any starts.
  CHECK_THAT(error_of_run("", "--set comm.transport=tcp --set parallel.data=3 --set comm.address=10.0.0.1:29500"),
             Contains("is not a loopback address"));
  // comm.world_size = 1: one process, whatever the launcher's variables say.
  const TroupeRun alone = run_troupe(dir.path, kSmall + "--set comm.world_size=1", "RANK=1 WORLD_SIZE=2");
  INFO(alone.err);
  CHECK(alone.code == 0);
}
