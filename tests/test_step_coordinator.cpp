// StepCoordinator as a plain state machine: its phases in order, what it keeps from whom, and that
// driving it by hand over stage workers gives the reference trainer's step exactly.
#include <catch2/catch.hpp>

#include "actors/state/step_coordinator.h"
#include "runtime/config/config_loader.h"
#include "training_runs.h"

using namespace troupe;

namespace {
RunConfig small() {
  return load_config(std::nullopt, {"model.n_layer=2", "model.n_embd=32", "model.n_head=2", "model.block_size=16",
                                    "train.batch_size=4", "train.threads=1", "train.deterministic=true",
                                    "data.order=sequential"});
}
}  // namespace

TEST_CASE("step coordinator: phases in order, losses and tied gradient from the last stage", "[step_coordinator]") {
  const RunConfig config = small();
  PipelineOptions o{.stages = 2, .microbatches = 2};
  const pipeline::Layout layout{2, 1};
  auto dataset = make_dataset(config);
  StepCoordinator c(config, o, layout);
  const StepCoordinator::Start start = c.begin(0, *dataset);
  CHECK(start.microbatches == 2);
  CHECK(start.batch.inputs.dim(0) == 4);
  CHECK(start.loss_scale == 1.0f / 64.0f);  // 4 samples x 16 tokens
  CHECK(c.last_stage() == 1);

  CHECK_THROWS(c.finished(0, {}));  // phase 2 before phase 1 is over
  Tensor mine = Tensor::empty({3}), head = Tensor::empty({3});
  c.ready(0, {Tensor::empty({5})}, mine);  // stage 0's losses and tied share are not the step's
  CHECK_FALSE(c.all_ready());
  Tensor losses = Tensor::empty({2});
  losses.f32()[0] = 1.0f;
  losses.f32()[1] = 2.0f;
  c.ready(1, {losses}, head);
  REQUIRE(c.all_ready());
  CHECK(c.tied_grad().f32() == head.f32());

  CHECK_THROWS(c.update());  // before every stage finished
  c.finished(1, {{4.0}});
  c.finished(0, {{9.0}});
  const StepUpdate u = c.update();
  CHECK(u.grad_norm == Approx(std::sqrt(13.0)));  // clipping on (train.grad_clip = 1)
  CHECK(u.clip == Approx(1.0 / std::sqrt(13.0)).epsilon(1e-6));
  CHECK_THROWS(c.stats(1.0));  // before every stage applied it
  Tensor w = Tensor::empty({3});
  c.applied(0, w);
  c.applied(1, Tensor());
  REQUIRE(c.all_applied());
  CHECK(c.tied_weight().f32() == w.f32());
  const StepStats s = c.stats(2.0);
  CHECK(s.loss == 1.5);
  CHECK(s.tokens_per_s == 1.0);  // 2 rows in 2 s
  CHECK(s.lr == u.lr);
}

TEST_CASE("the reference pipeline driven through the coordinator equals one device, bitwise", "[step_coordinator]") {
  const RunConfig config = small();
  const TrainingRun reference = single_device(config, 3);
  PipelineDriver driver(config, PipelineOptions{.stages = 2, .microbatches = 2});
  for (int s = 0; s < 3; ++s) CHECK(driver.train_step(s).loss == reference.losses[static_cast<std::size_t>(s)]);
}
