// The embedding API: errors come back to the caller, steps run in order, both back ends agree.
#include <catch2/catch.hpp>

#include "actors/session.h"
#include "runtime/config/config_loader.h"

using namespace troupe;

TEST_CASE("Session returns errors instead of throwing or exiting", "[session]") {
  RunConfig bad;
  bad.model.n_embd = 30;  // not divisible by n_head = 4
  auto s = Session::create(bad);
  REQUIRE_FALSE(s);
  CHECK(s.error().kind() == ErrorKind::kConfig);
  CHECK_THAT(s.error().what(), Catch::Contains("not divisible by model.n_head"));

  RunConfig too_many = load_config(std::nullopt, {"model.n_layer=1", "model.n_embd=32", "model.n_head=2",
                                                  "model.block_size=16", "parallel.pipeline=5", "train.batch_size=4"});
  auto p = Session::create(too_many);
  REQUIRE_FALSE(p);
  CHECK_THAT(p.error().what(), Catch::Contains("needs at least 5 layers"));
}

TEST_CASE("Session runs the configured steps on either back end, with equal losses", "[session]") {
  const std::vector<std::string> base = {"model.n_layer=2", "model.n_embd=32", "model.n_head=2", "model.block_size=16",
                                         "train.batch_size=4", "train.steps=3", "train.threads=1",
                                         "train.deterministic=true"};
  auto pipe_sets = base;
  pipe_sets.push_back("parallel.pipeline=2");
  pipe_sets.push_back("parallel.microbatches=2");
  auto single = Session::create(load_config(std::nullopt, base));
  auto piped = Session::create(load_config(std::nullopt, pipe_sets));
  REQUIRE(single);
  REQUIRE(piped);
  for (int i = 0; i < 3; ++i) {
    auto a = (*single)->step();
    auto b = (*piped)->step();
    REQUIRE(a);
    REQUIRE(b);
    CHECK(a->loss == b->loss);
  }
  auto extra = (*single)->step();
  REQUIRE_FALSE(extra);
  CHECK_THAT(extra.error().what(), Catch::Contains("all 3 steps"));
  CHECK((*single)->evaluate()->loss == (*piped)->evaluate()->loss);
  auto missing = (*single)->load_weights("/nonexistent/w.safetensors");
  REQUIRE_FALSE(missing);
}

TEST_CASE("Session injects fault.inject's faults like the command line, and the restarted run is the clean one",
          "[session][restart]") {
  std::vector<std::string> sets = {"model.n_layer=2",      "model.n_embd=32",          "model.n_head=2",
                                   "model.block_size=16",  "train.batch_size=4",       "train.steps=4",
                                   "train.threads=1",      "train.deterministic=true", "parallel.pipeline=2",
                                   "parallel.microbatches=2"};
  auto losses = [](const std::vector<std::string>& s) {
    auto session = Session::create(load_config(std::nullopt, s));
    REQUIRE(session);
    std::vector<double> out;
    while ((*session)->steps_done() < 4) {
      auto stats = (*session)->step();
      REQUIRE(stats);
      out.push_back(stats->loss);
    }
    return out;
  };
  const std::vector<double> clean = losses(sets);
  sets.push_back("fault.inject=kill stage 1 at step 1; throw optimizer 0 at step 2");
  CHECK(losses(sets) == clean);
}
