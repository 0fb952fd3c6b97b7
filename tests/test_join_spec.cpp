// How a process joins a job from its launcher's environment: Slurm host lists, HOST:PORT text, and resolve_join against literal environments (no process, no socket).
#include <catch2/catch.hpp>

#include "runtime/launch/host_list.h"
#include "runtime/launch/host_port.h"
#include "runtime/launch/join_spec.h"
#include "tests/error_of.h"

using namespace troupe;
using namespace troupe::launcher;
using Hosts = std::vector<std::string>;

TEST_CASE("Slurm host lists expand as scontrol show hostnames does", "[launch]") {
  CHECK(expand_host_list("node[01-04,07]", "L") == Hosts{"node01", "node02", "node03", "node04", "node07"});
  CHECK(expand_host_list("solo", "L") == Hosts{"solo"});
  CHECK(expand_host_list("a1,b[2-3],c", "L") == Hosts{"a1", "b2", "b3", "c"});
  CHECK(expand_host_list("n[8-11]", "L") == Hosts{"n8", "n9", "n10", "n11"});
  CHECK(expand_host_list("n[098-101]", "L") == Hosts{"n098", "n099", "n100", "n101"});
  CHECK(expand_host_list("rack[1-2]-n[8-9]", "L") == Hosts{"rack1-n8", "rack1-n9", "rack2-n8", "rack2-n9"});
  CHECK(expand_host_list("gpu[3],cpu[1,5]x", "L") == Hosts{"gpu3", "cpu1x", "cpu5x"});
}

TEST_CASE("a malformed Slurm host list is a config error naming the variable", "[launch]") {
  const auto error = [](const char* list) { return config_error([&] { expand_host_list(list, "SLURM_STEP_NODELIST"); }); };
  CHECK(error("node[01-04") == "SLURM_STEP_NODELIST = \"node[01-04\": a '[' without its ']'; expected Slurm's host list "
                               "syntax, e.g. node[01-04,07]");
  CHECK_THAT(error("node01-04]"), Catch::Contains("a ']' without its '['"));
  CHECK_THAT(error("node[04-01]"), Catch::Contains("the range 04-01 runs backwards"));
  CHECK_THAT(error("node[a-3]"), Catch::Contains("'a' in [a-3] is not a number"));
  CHECK_THAT(error("node[1,,2]"), Catch::Contains("'' in [1,,2] is not a number"));
  CHECK_THAT(error("a,,b"), Catch::Contains("an empty host name"));
  CHECK_THAT(error(""), Catch::Contains("an empty host name"));
}

TEST_CASE("no settings and no launcher's variables: no job to join (a run as before)", "[launch]") {
  CHECK_FALSE(resolve_join({}, {}).has_value());
  CHECK_FALSE(resolve_join({}, {{"PATH", "/usr/bin"}, {"MASTER_ADDR", "node01"}, {"LOCAL_RANK", "0"}}).has_value());
}

TEST_CASE("torchrun's variables", "[launch]") {
  const auto spec = resolve_join({}, {{"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"},
                                      {"MASTER_ADDR", "10.0.0.5"}, {"MASTER_PORT", "29400"}});
  REQUIRE(spec);
  CHECK(*spec == JoinSpec{JoinSource::torchrun, 3, 8, 1, 2, "10.0.0.5:29400", "MASTER_ADDR, MASTER_PORT"});
}

TEST_CASE("Slurm's variables: rank 0 on the first host of the step's node list", "[launch]") {
  const Environment slurm = {{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"},
                             {"SLURM_STEP_NODELIST", "gpu[07-10]"}, {"SLURM_JOB_NODELIST", "gpu[01-16]"}};
  auto spec = resolve_join({}, slurm);
  REQUIRE(spec);
  CHECK(*spec == JoinSpec{JoinSource::slurm, 5, 8, 1, -1, "gpu07:29500", "the first host of SLURM_STEP_NODELIST, the default port"});
  // MASTER_PORT picks the port, MASTER_ADDR (above the node list) the host.
  Environment with_port = slurm;
  with_port["MASTER_PORT"] = "31000";
  CHECK(resolve_join({}, with_port)->address == "gpu07:31000");
  with_port["MASTER_ADDR"] = "login1";
  CHECK(resolve_join({}, with_port)->address == "login1:31000");
  // Without a step's list (sbatch's own shell), the job's.
  Environment job_only = slurm;
  job_only.erase("SLURM_STEP_NODELIST");
  CHECK(resolve_join({}, job_only)->address == "gpu01:29500");
}

TEST_CASE("HOST:PORT splits at its one colon, and IPv6, a missing part or a bad port is an error naming the setting", "[launch]") {
  const auto split = [](const char* text) { return parse_host_port("comm.address", text, "127.0.0.1:29500"); };
  CHECK(split("127.0.0.1:29500").host == "127.0.0.1");
  CHECK(split("127.0.0.1:29500").port == 29500);
  CHECK(split("node01:0").host == "node01");
  CHECK(split("node01:0").port == 0);
  CHECK(split("node01:65535").port == 65535);
  const auto error = [&](const char* text) { return config_error([&] { split(text); }); };
  CHECK(error("::1:29500") == "comm.address = \"::1:29500\" is an IPv6 address; troupe's TCP links are IPv4: give an "
                              "IPv4 address or a host name, e.g. 127.0.0.1:29500");
  CHECK_THAT(error("[::1]:29500"), Catch::Contains("is an IPv6 address"));
  CHECK(error("127.0.0.1") == "comm.address = \"127.0.0.1\" must be host:port, e.g. 127.0.0.1:29500");
  CHECK_THAT(error(":29500"), Catch::Contains("must be host:port"));
  CHECK_THAT(error("node01:"), Catch::Contains("must be host:port"));
  CHECK(error("node01:65536") ==
        "comm.address = \"node01:65536\" has port '65536', which is not a whole number in [0, 65535]; e.g. 127.0.0.1:29500");
  CHECK_THAT(error("node01:29x"), Catch::Contains("has port '29x'"));
  CHECK_THAT(error("node01:-1"), Catch::Contains("has port '-1'"));
  // Where a launcher's job gives comm.address, the same parser reads it.
  CHECK_THAT(config_error([] { resolve_join({.rank = 1, .world_size = 2, .address = "fe80::1"}, {}); }),
             Catch::Contains("comm.address = \"fe80::1\" is an IPv6 address"));
}

TEST_CASE("OpenMPI's variables need MASTER_ADDR or comm.address", "[launch]") {
  const Environment mpi = {{"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "4"},
                           {"OMPI_COMM_WORLD_LOCAL_RANK", "0"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "1"}};
  CHECK(config_error([&] { resolve_join({}, mpi); }) ==
        "OpenMPI makes this process rank 2 of 4, but nothing says where rank 0 listens: set MASTER_ADDR (and "
        "MASTER_PORT; with mpirun: mpirun -x MASTER_ADDR=HOST -x MASTER_PORT=PORT) or --set comm.address=HOST:PORT");
  Environment with_master = mpi;
  with_master["MASTER_ADDR"] = "10.77.0.1";
  CHECK(*resolve_join({}, with_master) == JoinSpec{JoinSource::openmpi, 2, 4, 0, 1, "10.77.0.1:29500", "MASTER_ADDR, the default port"});
  const JoinSettings address{.address = "head:7000"};
  CHECK(*resolve_join(address, mpi) == JoinSpec{JoinSource::openmpi, 2, 4, 0, 1, "head:7000", "comm.address"});
  // One process alone needs no address.
  CHECK(*resolve_join({}, {{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "1"}}) ==
        JoinSpec{JoinSource::openmpi, 0, 1, -1, -1, "", ""});
}

TEST_CASE("precedence: settings, then torchrun, then Slurm, then OpenMPI", "[launch]") {
  Environment env = {{"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "4"}, {"SLURM_PROCID", "1"},
                     {"SLURM_NTASKS", "2"},         {"SLURM_STEP_NODELIST", "n[1-2]"}};
  CHECK(resolve_join({}, env)->source == JoinSource::slurm);
  CHECK(resolve_join({}, env)->rank == 1);
  // torchrun inside a Slurm allocation: RANK is this process, SLURM_PROCID the torchrun agent.
  env["RANK"] = "6";
  env["WORLD_SIZE"] = "8";
  const auto torchrun = resolve_join({}, env);
  CHECK(torchrun->source == JoinSource::torchrun);
  CHECK(torchrun->rank == 6);
  CHECK(torchrun->world_size == 8);
  CHECK(torchrun->address == "n1:29500");  // no MASTER_ADDR: the node list still names rank 0's host
  const auto settings = resolve_join({.rank = 1, .world_size = 3, .address = "127.0.0.1:4000"}, env);
  CHECK(*settings == JoinSpec{JoinSource::settings, 1, 3, -1, -1, "127.0.0.1:4000", "comm.address"});
  // comm.world_size = 1 alone: one process, whatever the environment says.
  const auto alone = resolve_join({.world_size = 1}, env);
  CHECK(alone->world_size == 1);
  CHECK(alone->rank == 0);
}

TEST_CASE("partial and conflicting variables are config errors that say what to set", "[launch]") {
  CHECK(config_error([] { resolve_join({}, {{"RANK", "1"}}); }) ==
        "RANK is set but WORLD_SIZE is not: torchrun sets both; set both, or unset the one that is left over");
  CHECK(config_error([] { resolve_join({}, {{"SLURM_NTASKS", "4"}}); }) ==
        "SLURM_NTASKS is set but SLURM_PROCID is not: Slurm sets both; set both, or unset the one that is left over");
  // A partial source above a complete one is not skipped.
  CHECK_THAT(config_error([] { resolve_join({}, {{"WORLD_SIZE", "4"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}}); }),
             Catch::StartsWith("WORLD_SIZE is set but RANK is not"));
  // ... but one below the winner is never read.
  CHECK(resolve_join({}, {{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"SLURM_PROCID", "x"}})->world_size == 1);
  CHECK(config_error([] { resolve_join({}, {{"RANK", "4"}, {"WORLD_SIZE", "4"}, {"MASTER_ADDR", "h"}}); }) ==
        "RANK = 4 is not below WORLD_SIZE = 4: ranks run from 0 to the world size - 1");
  CHECK(config_error([] { resolve_join({}, {{"RANK", "-1"}, {"WORLD_SIZE", "4"}}); }) ==
        "RANK = \"-1\" is not a rank (a whole number >= 0)");
  CHECK(config_error([] { resolve_join({}, {{"RANK", "1"}, {"WORLD_SIZE", "four"}}); }) ==
        "WORLD_SIZE = \"four\" is not a world size (a whole number >= 1)");
  CHECK(config_error([] { resolve_join({}, {{"RANK", "1"}, {"WORLD_SIZE", "0"}}); }) ==
        "WORLD_SIZE = \"0\" is not a world size (a whole number >= 1)");
  CHECK_THAT(config_error([] {
               resolve_join({}, {{"RANK", "1"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "2"}, {"LOCAL_WORLD_SIZE", "2"}});
             }),
             Catch::StartsWith("LOCAL_RANK = 2 is not below LOCAL_WORLD_SIZE = 2"));
  CHECK_THAT(config_error([] { resolve_join({}, {{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}}); }),
             Catch::Contains("MASTER_PORT = 70000 is above 65535"));
  CHECK_THAT(config_error([] { resolve_join({}, {{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "http"}}); }),
             Catch::Contains("MASTER_PORT = \"http\" is not a port"));
  CHECK_THAT(config_error([] { resolve_join({}, {{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}, {"SLURM_STEP_NODELIST", "n[1-"}}); }),
             Catch::StartsWith("SLURM_STEP_NODELIST = \"n[1-\": a '[' without its ']'"));
  CHECK(config_error([] { resolve_join({.rank = 2}, {}); }) ==
        "comm.rank = 2 is set but comm.world_size is not: set both, or neither to take them from the launcher "
        "(torchrun, Slurm, mpirun)");
  CHECK_THAT(config_error([] { resolve_join({.world_size = 3}, {}); }), Catch::StartsWith("comm.world_size = 3 is set but comm.rank is not"));
  CHECK(config_error([] { resolve_join({.rank = 3, .world_size = 3, .address = "h:1"}, {}); }) ==
        "comm.rank = 3 is not below comm.world_size = 3: ranks run from 0 to the world size - 1");
}
