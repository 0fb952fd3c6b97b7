// Topology: rank arithmetic and groups against literal tables, and the layout make_topology gives
// each strategy (no actor, thread or socket involved).
#include <catch2/catch.hpp>

#include "models/model.h"
#include "runtime/config/config_loader.h"
#include "runtime/plan/topology.h"

using namespace troupe;
using namespace troupe::plan;
using Groups = std::vector<std::vector<int>>;

namespace {
Topology mesh(int data, int pipe, int tensor) {
  Topology t;
  t.dims = {data, pipe, tensor};
  return t;
}

Topology topology_of(const std::vector<std::string>& sets) {
  const RunConfig config = load_config(std::nullopt, sets);
  return make_topology(config, layer_info(make_layer_specs(config.model, config.train.seed)),
                       std::vector<Device>(static_cast<std::size_t>(config.parallel.pipeline), Device::cpu()));
}
}  // namespace

TEST_CASE("topology dp2 x pp2: rank, coordinate and groups as a table", "[topology]") {
  const Topology t = mesh(2, 2, 1);
  REQUIRE(t.world_size() == 4);
  // rank -> (data, pipe, tensor)
  const std::vector<Coord> table = {{0, 0, 0}, {0, 1, 0}, {1, 0, 0}, {1, 1, 0}};
  for (int r = 0; r < 4; ++r) {
    CHECK(t.coord_of(r) == table[static_cast<std::size_t>(r)]);
    CHECK(t.rank_of(table[static_cast<std::size_t>(r)]) == r);
  }
  CHECK(t.groups(Axis::data) == Groups{{0, 2}, {1, 3}});
  CHECK(t.groups(Axis::pipe) == Groups{{0, 1}, {2, 3}});
  CHECK(t.groups(Axis::tensor) == Groups{{0}, {1}, {2}, {3}});
  CHECK(t.group_of(3, Axis::data) == std::vector<int>{1, 3});
  CHECK(t.group_of(2, Axis::pipe) == std::vector<int>{2, 3});
}

TEST_CASE("topology dp2 x pp2 x tp2: the tensor axis is innermost", "[topology]") {
  const Topology t = mesh(2, 2, 2);
  REQUIRE(t.world_size() == 8);
  CHECK(t.coord_of(0) == Coord{0, 0, 0});
  CHECK(t.coord_of(1) == Coord{0, 0, 1});
  CHECK(t.coord_of(2) == Coord{0, 1, 0});
  CHECK(t.coord_of(5) == Coord{1, 0, 1});
  CHECK(t.coord_of(7) == Coord{1, 1, 1});
  CHECK(t.groups(Axis::tensor) == Groups{{0, 1}, {2, 3}, {4, 5}, {6, 7}});
  CHECK(t.groups(Axis::pipe) == Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}});
  CHECK(t.groups(Axis::data) == Groups{{0, 4}, {1, 5}, {2, 6}, {3, 7}});
}

TEST_CASE("topology: every rank is in exactly one group per axis, for any mesh", "[topology]") {
  for (int d : {1, 2, 3})
    for (int p : {1, 2, 4})
      for (int tp : {1, 2, 3}) {
        const Topology t = mesh(d, p, tp);
        INFO("mesh " << d << "x" << p << "x" << tp);
        for (Axis a : kAxes) {
          std::vector<int> seen(static_cast<std::size_t>(t.world_size()), 0);
          const Groups groups = t.groups(a);
          CHECK(static_cast<int>(groups.size()) == t.world_size() / t.size(a));
          for (const auto& g : groups) {
            CHECK(static_cast<int>(g.size()) == t.size(a));
            for (int r : g) ++seen[static_cast<std::size_t>(r)];
          }
          for (int n : seen) CHECK(n == 1);
        }
        for (int r = 0; r < t.world_size(); ++r) CHECK(t.rank_of(t.coord_of(r)) == r);
      }
}

TEST_CASE("make_topology: one device is one rank in one process", "[topology]") {
  const Topology t = topology_of({});
  CHECK(t.world_size() == 1);
  CHECK(t.processes() == 1);
  CHECK(t.places == std::vector<Place>{{0, "localhost", Device::cpu()}});
  REQUIRE(t.stages.size() == 1);
  CHECK(t.stages[0].chunks.front().first == 0);
  CHECK(t.stages[0].program == "F0 B0 STEP");
  CHECK_FALSE(t.servers);
}

TEST_CASE("make_topology: dp2 x pp2 over tcp puts each replica in its own process", "[topology]") {
  const Topology t = topology_of({"parallel.data=2", "parallel.pipeline=2", "parallel.microbatches=2",
                                  "comm.transport=tcp", "parallel.schedule=gpipe"});
  CHECK(t.world_size() == 4);
  CHECK(t.processes() == 2);
  // rank -> process: replica r is process r
  const std::vector<int> process = {0, 0, 1, 1};
  for (int r = 0; r < 4; ++r) CHECK(t.places[static_cast<std::size_t>(r)].process == process[static_cast<std::size_t>(r)]);
  REQUIRE(t.stages.size() == 2);
  CHECK(t.stages[0].chunks.front().first == 0);
  CHECK(t.stages[0].chunks.front().second == t.stages[1].chunks.front().first);
  CHECK(t.stages[0].program == "F0 SEND_F0 F1 SEND_F1 RECV_B0 B0 RECV_B1 B1 STEP");
  CHECK(t.stages[1].program == "RECV_F0 F0 RECV_F1 F1 B0 SEND_B0 B1 SEND_B1 STEP");
}

TEST_CASE("make_topology: interleaved stages hold one chunk per virtual stage", "[topology]") {
  const Topology t = topology_of({"parallel.pipeline=2", "parallel.virtual_stages=2", "parallel.schedule=interleaved",
                                  "parallel.microbatches=2"});
  REQUIRE(t.stages.size() == 2);
  REQUIRE(t.stages[0].chunks.size() == 2);
  // Virtual stage c*P + s: stage 0 holds virtual stages 0 and 2, stage 1 holds 1 and 3.
  CHECK(t.stages[0].chunks[0].second == t.stages[1].chunks[0].first);
  CHECK(t.stages[1].chunks[0].second == t.stages[0].chunks[1].first);
  CHECK(t.stages[0].chunks[1].second == t.stages[1].chunks[1].first);
}

TEST_CASE("make_topology: parameter servers are described with their workers", "[topology]") {
  const Topology t = topology_of({"parallel.data=3", "parallel.gradient_exchange=ps", "ps.shards=2", "ps.mode=ssp",
                                  "ps.staleness=1", "train.batch_size=12"});
  REQUIRE(t.servers);
  CHECK(t.servers->shards == 2);
  CHECK(t.servers->mode == PsMode::ssp);
  CHECK(t.groups(Axis::data) == Groups{{0, 1, 2}});
  const std::string text = describe(t, {});
  CHECK_THAT(text, Catch::Contains("workers of 2 parameter-server shards in process 0, mode ssp (staleness 1)"));
}

TEST_CASE("make_topology refuses a layout the model cannot fill, naming the keys", "[topology]") {
  CHECK_THROWS_WITH(topology_of({"parallel.pipeline=4", "parallel.virtual_stages=4", "parallel.schedule=interleaved",
                                 "parallel.microbatches=4"}),
                    Catch::Contains("needs at least 16 layers"));
  CHECK_THROWS_WITH(topology_of({"parallel.pipeline=2", "parallel.boundaries=0,99"}),
                    Catch::Contains("parallel.boundaries"));
}

TEST_CASE("describe: the plan names every rank's place, the groups and the programs", "[topology]") {
  const RunConfig config = load_config(std::nullopt, {"parallel.data=2", "parallel.pipeline=2", "parallel.zero=1"});
  const LayerInfo layers = layer_info(make_layer_specs(config.model, config.train.seed));
  const std::string text = describe(make_topology(config, layers, {Device::cpu(), Device::cpu()}), layers);
  CHECK_THAT(text, Catch::Contains("topology: data 2 x pipe 2 x tensor 1 = 4 ranks in 1 process"));
  CHECK_THAT(text, Catch::Contains("data:   [0 2] [1 3]  gradient exchange ring, optimizer state sharded (ZeRO-1)"));
  CHECK_THAT(text, Catch::Contains("pipe:   [0 1] [2 3]  schedule 1f1b"));
  CHECK_THAT(text, Catch::Contains("stage 1: RECV_F0 F0 B0 SEND_B0 STEP"));
  CHECK_THAT(text, Catch::Contains("wte"));
}
