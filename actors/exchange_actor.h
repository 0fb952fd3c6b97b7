// Owns the gradient-exchange actor: one stage replica's participant in its data-parallel group, which
// reduces the stage's gradient buckets with the same stage of the other replicas while backward goes on.
//
// The stage's GradientSync (actors/state/gradient_sync.h) decides what to reduce and when; this actor
// is who does it: the stage hands it each bucket as backward completes the bucket's layers, and it
// runs the bucket's collective. It is detached (a thread of its own) because a collective blocks on
// its peers' messages over the transport, and a blocking actor on CAF's shared scheduler would stall
// every other actor queued on that worker. It lives under its stage in the supervision tree
// ("replica r/stage s/gradient exchange"): if it dies, its pipeline reports it by that name.
#pragma once

#include <cstdint>

#include "actors/protocol.h"
#include "actors/state/gradient_sync.h"

namespace troupe {

struct ExchangeActorState {
  GradientSync* sync = nullptr;  // owned by the stage worker, which outlives the actor
  static inline const char* name = "troupe.gradient_exchange";
};

// (exchange_atom, std::uint64_t bucket): reduces that bucket across the replicas (buckets arrive, and
// are reduced, in the order backward completes them: the same on every replica).
caf::behavior exchange_actor(caf::stateful_actor<ExchangeActorState>* self, GradientSync* sync);

// Spawns `sync`'s exchange actor into `system` and hands `sync` its address; returns the actor (for
// the owner to monitor and stop).
caf::actor spawn_exchange_actor(caf::actor_system& system, GradientSync& sync);

}  // namespace troupe
