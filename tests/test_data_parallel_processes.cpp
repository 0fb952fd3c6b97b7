// Owns the multi-process data-parallel tests: `troupe train` with comm.transport=tcp (or shm) runs its replicas as real processes over loopback sockets (or shared memory), equal to the single device, and fails fast when one dies.
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "tests/dev_shm.h"
#include "tests/same_losses.h"
#include "tests/same_weights.h"
#include "tests/temp_dir.h"
#include "tests/troupe_command.h"

using Catch::Matchers::Contains;

namespace {

TroupeRun run(const TempDir& dir, const std::string& env, const std::string& args) {
  return run_troupe(dir.path, args, env);
}

const std::string kSmall =
    "train --steps 4 --set model.n_layer=2 --set model.n_embd=32 --set model.n_head=2 --set model.block_size=16 "
    "--set train.batch_size=8 --set train.eval_every=0 --set train.eval_batches=1 --set data.order=sequential "
    "--set train.deterministic=true --set comm.address=127.0.0.1:0 ";

// The small GPT trained by replicas as processes over `transport` (tcp, shm), in each of `layouts`, equals
// the single device bit for bit: every step's loss and the final weights. The run says `announced`.
void check_processes_equal_single_device(const std::string& transport, const std::string& announced,
                                         const std::vector<std::string>& layouts) {
  TempDir dir;
  const TroupeRun single = run(dir, "", kSmall + "--dump-losses " + dir.file("single.jsonl") + " --save " + dir.file("single.st"));
  REQUIRE(single.code == 0);
  for (const std::string& extra : layouts) {
    INFO(extra);
    const TroupeRun dp = run(dir, "", kSmall + extra + " --set comm.transport=" + transport + " --dump-losses " +
                                       dir.file("dp.jsonl") + " --save " + dir.file("dp.st"));
    INFO(dp.err);
    REQUIRE(dp.code == 0);
    CHECK_THAT(dp.out, Contains(announced));
    // Same loss bits every step, and the same final weights, bit for bit.
    check_same_losses(dir.file("single.jsonl"), dir.file("dp.jsonl"), 4);
    check_same_weights(dir.file("single.st"), dir.file("dp.st"));
  }
}

}  // namespace

TEST_CASE("tcp replicas as processes = single device, bitwise (losses and weights)", "[data_parallel][tcp]") {
  check_processes_equal_single_device("tcp", "replicas as processes over tcp",
                                      {"--set parallel.data=2", "--set parallel.data=4 --set parallel.gradient_exchange=alltoall",
                                       "--set parallel.data=2 --set parallel.zero=1",
                                       "--set parallel.data=2 --set parallel.pipeline=2 --set parallel.microbatches=2"});
}

TEST_CASE("tcp replicas of the cnn with synchronised batch norm = single device, bitwise, running statistics included",
          "[data_parallel][tcp][cnn]") {
  if (!std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")) {
    WARN("dataset-fashion-mnist is not installed; skipping");
    return;
  }
  TempDir dir;
  const std::string cnn =
      "train --steps 3 --set model.kind=cnn --set model.cnn_channels=4,8 --set model.cnn_blocks=1,1 "
      "--set train.batch_size=8 --set train.eval_every=0 --set train.eval_batches=1 --set train.deterministic=true "
      "--set model.sync_batchnorm=true --set comm.address=127.0.0.1:0 ";
  const TroupeRun single = run(dir, "", cnn + "--dump-losses " + dir.file("single.jsonl") + " --save " + dir.file("single.st"));
  REQUIRE(single.code == 0);
  for (const std::string extra : {"--set parallel.data=2", "--set parallel.data=2 --set parallel.pipeline=2"}) {
    INFO(extra);
    const TroupeRun dp = run(dir, "", cnn + extra + " --set comm.transport=tcp --dump-losses " + dir.file("dp.jsonl") +
                                         " --save " + dir.file("dp.st"));
    INFO(dp.err);
    REQUIRE(dp.code == 0);
    CHECK_THAT(dp.out, Contains("replicas as processes over tcp"));
    check_same_losses(dir.file("single.jsonl"), dir.file("dp.jsonl"), 3);
    check_same_weights(dir.file("single.st"), dir.file("dp.st"));  // buffers too: every tensor of the file
  }
}

TEST_CASE("with fault.max_restarts = 0 a replica process that dies fails the run at once, naming it, and leaves no "
          "process behind",
          "[data_parallel][tcp]") {
  TempDir dir;
  const auto start = std::chrono::steady_clock::now();
  const TroupeRun r = run(dir, "TROUPE_TEST_CRASH=1:2",
                       kSmall + "--seed 4242 --set parallel.data=3 --set train.batch_size=9 --set comm.transport=tcp "
                                "--set comm.timeout_s=60 --set fault.max_restarts=0 --save " + dir.file("w.st"));
  INFO(r.out << r.err);
  CHECK(r.code == 1);
  CHECK_THAT(r.err, Contains("rank 1"));
  CHECK_THAT(r.err, Contains("dead"));
  CHECK_FALSE(std::filesystem::exists(dir.file("w.st")));  // nothing half-written
  // Well inside comm.timeout_s: the peers saw the connection drop instead of waiting.
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(30));
  // No stray rank of this run is still alive (the pattern cannot match the shell running pgrep).
  CHECK(std::system("pgrep -f 'seed 424[2] .*--rank' > /dev/null") != 0);
}

TEST_CASE("replica process restarts: a dead one is restarted by rank 0, takes its state live, and the run is the "
          "single device's, bitwise",
          "[data_parallel][tcp][restart]") {
  TempDir dir;
  const TroupeRun single = run(dir, "", kSmall + "--set train.batch_size=12 --dump-losses " + dir.file("single.jsonl") +
                                            " --save " + dir.file("single.st"));
  REQUIRE(single.code == 0);
  // Rank 2 of a ring dies before step 2 (the drill: no goodbye on its links); rank 1 of a 2 x 2 pipeline
  // with all-to-all exchange before step 1.
  for (const auto& [crash, layout] : {std::pair<std::string, std::string>{"TROUPE_TEST_CRASH=2:2", "--set parallel.data=3"},
                                      {"TROUPE_TEST_CRASH=1:1", "--set parallel.data=2 --set parallel.pipeline=2 "
                                                                "--set parallel.microbatches=2 "
                                                                "--set parallel.gradient_exchange=alltoall"}}) {
    INFO(crash << " " << layout);
    const TroupeRun r = run(dir, crash, kSmall + "--set train.batch_size=12 " + layout +
                                            " --set comm.transport=tcp --set comm.timeout_s=30 --dump-losses " +
                                            dir.file("restarted.jsonl") + " --save " + dir.file("restarted.st"));
    INFO(r.out << r.err);
    REQUIRE(r.code == 0);
    CHECK_THAT(r.err, Contains("exited with status 3"));
    CHECK_THAT(r.err, Contains("rank 0 restarted it as process"));
    CHECK_THAT(r.out + r.err, Contains("1 restart (fault.max_restarts = 3)"));
    check_same_losses(dir.file("single.jsonl"), dir.file("restarted.jsonl"), 4);
    check_same_weights(dir.file("single.st"), dir.file("restarted.st"));
  }
}

TEST_CASE("fault.inject kills or stalls a replica process: it is restarted and the run is the single device's, "
          "bitwise, and rank 0's death ends the run, which --resume continues bitwise",
          "[data_parallel][tcp][restart]") {
  TempDir dir;
  const std::string base = kSmall + "--steps 6 --set train.batch_size=12 ";
  const TroupeRun single = run(dir, "", base + "--dump-losses " + dir.file("single.jsonl") + " --save " + dir.file("single.st"));
  REQUIRE(single.code == 0);
  const std::string dp = base + "--set parallel.data=3 --set comm.transport=tcp ";
  // Killed twice (the second time the restarted process), then stalled: three restarts, found by heartbeats
  // within comm.timeout_s / 2 for the stall.
  const TroupeRun r = run(dir, "", dp + "--set comm.timeout_s=4 --set fault.max_restarts=3 "
                                        "--set \"fault.inject=kill rank 1 at step 1; kill rank 1 at step 3; stall rank 2 at step 4\" "
                                        "--dump-losses " + dir.file("faulty.jsonl") + " --save " + dir.file("faulty.st"));
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.err, Contains("data-parallel rank 1: its process"));
  CHECK_THAT(r.err, Contains("data-parallel rank 2: its process"));
  CHECK_THAT(r.err, Contains("sent no heartbeat"));
  CHECK_THAT(r.out + r.err, Contains("3 restarts (fault.max_restarts = 3)"));
  check_same_losses(dir.file("single.jsonl"), dir.file("faulty.jsonl"), 6);
  check_same_weights(dir.file("single.st"), dir.file("faulty.st"));
  // Rank 0 is not restarted: its death ends the run (its ranks follow it); --resume continues from the newest
  // checkpoint, bitwise.
  const TroupeRun dead = run(dir, "", dp + "--set train.checkpoint_dir=" + dir.file("ck") +
                                          " --set train.checkpoint_every=1 --set \"fault.inject=kill rank 0 at step 3\"");
  INFO(dead.out << dead.err);
  CHECK(dead.code != 0);
  const TroupeRun resumed = run(dir, "", "train --resume " + dir.file("ck") + " --set fault.inject= --dump-losses " + dir.file("resumed.jsonl") +
                                             " --save " + dir.file("resumed.st"));
  INFO(resumed.out << resumed.err);
  REQUIRE(resumed.code == 0);
  check_same_weights(dir.file("single.st"), dir.file("resumed.st"));
}

TEST_CASE("ps workers as processes over tcp = single device, bitwise, a dead worker is restarted, or fails the run at once",
          "[ps][tcp]") {
  TempDir dir;
  const TroupeRun single = run(dir, "", kSmall + "--set train.batch_size=12 --dump-losses " + dir.file("single.jsonl") +
                                            " --save " + dir.file("single.st"));
  REQUIRE(single.code == 0);
  for (const std::string extra : {"--set parallel.data=2 --set ps.shards=2", "--set parallel.data=3 --set ps.shards=1"}) {
    INFO(extra);
    const TroupeRun ps = run(dir, "", kSmall + "--set train.batch_size=12 --set parallel.gradient_exchange=ps " + extra +
                                          " --set comm.transport=tcp --dump-losses " + dir.file("ps.jsonl") + " --save " +
                                          dir.file("ps.st"));
    INFO(ps.out << ps.err);
    REQUIRE(ps.code == 0);
    CHECK_THAT(ps.out, Contains("workers as processes over tcp"));
    check_same_losses(dir.file("single.jsonl"), dir.file("ps.jsonl"), 4);
    check_same_weights(dir.file("single.st"), dir.file("ps.st"));
  }
  // Worker 2 dies before step 2: rank 0 restarts it, it resumes at step 2, and nothing changes.
  const TroupeRun restarted = run(dir, "TROUPE_TEST_CRASH=2:2",
                                  kSmall + "--set train.batch_size=12 --set parallel.gradient_exchange=ps --set parallel.data=3 "
                                           "--set ps.shards=2 --set comm.transport=tcp --dump-losses " +
                                      dir.file("restarted.jsonl") + " --save " + dir.file("restarted.st"));
  INFO(restarted.out << restarted.err);
  REQUIRE(restarted.code == 0);
  CHECK_THAT(restarted.err, Contains("restarting ps worker 2 (restart 1 of at most 3); it resumes at step 2"));
  CHECK_THAT(restarted.out, Contains("1 worker restart"));
  check_same_losses(dir.file("single.jsonl"), dir.file("restarted.jsonl"), 4);
  check_same_weights(dir.file("single.st"), dir.file("restarted.st"));
  // With restarts off, the same death fails the run at once, naming the worker.
  const auto start = std::chrono::steady_clock::now();
  const TroupeRun r = run(dir, "TROUPE_TEST_CRASH=2:2",
                          kSmall + "--seed 4343 --set train.batch_size=12 --set parallel.gradient_exchange=ps "
                                   "--set parallel.data=3 --set comm.transport=tcp --set comm.timeout_s=60 "
                                   "--set ps.max_restarts=0 --save " +
                              dir.file("crash.st"));
  INFO(r.out << r.err);
  CHECK(r.code == 1);
  CHECK_THAT(r.err, Contains("ps worker 2"));
  CHECK_THAT(r.err, Contains("dead"));
  CHECK_FALSE(std::filesystem::exists(dir.file("crash.st")));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(30));
  CHECK(std::system("pgrep -f 'seed 434[3] .*--rank' > /dev/null") != 0);
}

TEST_CASE("fault.inject in ps worker processes: a stalled one is found by heartbeats and restarted, a killed or "
          "throwing one restarted, worker 0's actor restarted in rank 0, the healthy workers never, bitwise",
          "[ps][tcp][restart]") {
  TempDir dir;
  const TroupeRun single = run(dir, "", kSmall + "--steps 5 --set train.batch_size=12 --dump-losses " +
                                            dir.file("single.jsonl") + " --save " + dir.file("single.st"));
  REQUIRE(single.code == 0);
  // Before heartbeats, a stalled worker was found only when the healthy workers' waits on the shards timed
  // out: they failed (or were restarted) instead of it. comm.timeout_s = 4: the stall is found within 2 s,
  // and the newcomer's start and step may take longer than the 2 s left on a loaded machine.
  const TroupeRun r = run(dir, "", kSmall + "--steps 5 --set train.batch_size=12 --set parallel.gradient_exchange=ps "
                                            "--set parallel.data=3 --set ps.shards=2 --set comm.transport=tcp "
                                            "--set comm.timeout_s=4 --set \"fault.inject=stall rank 1 at step 1; kill "
                                            "rank 2 at step 2; throw worker 0 at step 3; throw worker 1 at step 4\" "
                                            "--dump-losses " + dir.file("faulty.jsonl") + " --save " + dir.file("faulty.st"));
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.err, Contains("rank 1 (process") && Contains("sent no heartbeat"));
  // Rank 2 may be killed before or after rank 1's stall is found (both as step 2 begins there).
  CHECK_THAT(r.err, Contains("restarting ps worker 1 (restart ") && Contains("of at most 3); it resumes at step 1"));
  CHECK_THAT(r.err, Contains("restarting ps worker 2 (restart ") && Contains("of at most 3); it resumes at step 2"));
  CHECK_THAT(r.err, Contains("restarted ps worker 0 (restart 1 of at most 3 within 60 s); it runs step 3 again"));
  CHECK_THAT(r.err, Contains("restarting ps worker 1 (restart 3 of at most 3); it resumes at step 4"));
  CHECK_THAT(r.out, Contains("3 worker restarts") && Contains("4 restarts (fault.max_restarts = 3 for worker actors, "
                                                              "ps.max_restarts = 3 for worker processes)"));
  CHECK_THAT(r.out, Contains("  worker 0 in step 3: fault.inject: throw worker 0 at step 3") &&
                        Contains("  ps worker 2 in step 2: "));
  check_same_losses(dir.file("single.jsonl"), dir.file("faulty.jsonl"), 5);
  check_same_weights(dir.file("single.st"), dir.file("faulty.st"));
}

TEST_CASE("shm replicas as processes = single device, bitwise (losses and weights)", "[data_parallel][shm]") {
  // The same bits as the single device, and so as the same run over tcp and inproc (tested above and in
  // test_data_parallel.cpp against the same single-device run).
  check_processes_equal_single_device("shm", "replicas as processes over shared memory",
                                      {"--set parallel.data=2", "--set parallel.data=4",
                                       "--set parallel.data=2 --set parallel.pipeline=2 --set parallel.microbatches=2"});
}

TEST_CASE("a replica process over shm that dies fails the run at once, naming it, and leaves nothing in /dev/shm",
          "[data_parallel][shm]") {
  TempDir dir;
  const std::set<std::string> before = troupe::dev_shm();
  const auto start = std::chrono::steady_clock::now();
  const TroupeRun r = run(dir, "TROUPE_TEST_CRASH=1:2",
                       kSmall + "--seed 4244 --set parallel.data=3 --set train.batch_size=9 --set comm.transport=shm "
                                "--set comm.timeout_s=60 --save " + dir.file("w.st"));
  INFO(r.out << r.err);
  CHECK(r.code == 1);
  CHECK_THAT(r.err, Contains("rank 1"));
  CHECK_THAT(r.err, Contains("dead"));
  CHECK_FALSE(std::filesystem::exists(dir.file("w.st")));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(30));  // not comm.timeout_s
  CHECK(std::system("pgrep -f 'seed 424[4] .*--rank' > /dev/null") != 0);
  CHECK(troupe::dev_shm() == before);
}
