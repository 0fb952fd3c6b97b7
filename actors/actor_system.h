// Owns ActorSystem: the CAF actor system a job's actors live in — one per process. The runner's job
// creates it (through the trainer it runs) and every stage actor of every replica is spawned into it,
// so a process pays for one scheduler and one registry however many replicas and stages it holds.
#pragma once

#include <memory>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

namespace troupe {

class ActorSystem {
 public:
  ActorSystem() {
    config_.set("logger.verbosity", caf::atom("quiet"));
    system_ = std::make_unique<caf::actor_system>(config_);
  }
  ActorSystem(const ActorSystem&) = delete;
  ActorSystem& operator=(const ActorSystem&) = delete;
  // Every actor must have been stopped by its owner (each owner waits for its own actors' ends).
  ~ActorSystem() { system_->await_all_actors_done(); }

  caf::actor_system& get() { return *system_; }

 private:
  caf::actor_system_config config_;
  std::unique_ptr<caf::actor_system> system_;  // after config_, which it refers to
};

}  // namespace troupe
