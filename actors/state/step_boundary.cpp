// StageWorker's step boundary: the copy kept as a step begins, and the rewind to it that lets a
// supervisor re-run an interrupted step (stage_worker.h, "restarts").
#include "actors/state/stage_worker.h"

#include <algorithm>

namespace troupe {

void StageWorker::keep_boundary(std::int64_t step) {
  boundary_ = std::make_unique<StageSnapshot>(snapshot());
  boundary_step_ = step;
}

void StageWorker::rewind(std::int64_t step) {
  inbox_.clear();
  ready_.clear();
  outputs_.clear();
  ctxs_.clear();
  losses_.clear();
  microbatches_.clear();
  cursor_ = 0;
  in_flight_ = 0;
  credits_used_.clear();
  backwards_done_.assign(chunks_.size(), 0);
  grads_final_ = false;
  blocked_since_ = -1.0;
  sent_.clear();
  received_.clear();
  // A backward that was cut short leaves exact sums in the backend (deterministic mode): flushing moves
  // them into the gradients, which are then zeroed with the rest.
  for (auto& m : chunks_) {
    m->flush_exact_grads(backend_);
    m->zero_grad();
  }
  if (boundary_ && boundary_step_ == step) restore(*boundary_);
}

void StageWorker::keep_sent(bool on) {
  // Messages that came before the step began are in the inbox: they count as received.
  if (on && !keep_sent_)
    for (const auto& [key, tensor] : inbox_) received_.insert(key);
  keep_sent_ = on;
}

std::vector<Outgoing> StageWorker::resend_to(int stage) const {
  std::vector<Outgoing> out;
  for (const Outgoing& o : sent_)
    if (o.to_stage == stage) out.push_back(o);
  return out;
}

bool StageWorker::can_redo_alone() const {
  // The last micro-batch's backward hands a layer's gradients to the replicas' exchange (stage_worker.cpp).
  const bool exchanging = sync_ && sync_->replicas() > 1 &&
                          std::any_of(backwards_done_.begin(), backwards_done_.end(),
                                      [&](int done) { return done >= static_cast<int>(microbatches_.size()); });
  return keep_sent_ && !grads_final_ && !exchanging && tensor_.size() == 1 && !replica_sum_ && credit_limit_ == 0;
}

std::size_t StageWorker::boundary_bytes() const {
  if (!boundary_) return 0;
  std::size_t bytes = 0;
  for (const auto& [name, t] : boundary_->params) bytes += static_cast<std::size_t>(t.numel()) * sizeof(float);
  for (const auto& [name, ps] : boundary_->optimizer.params)
    for (const auto& [slot, t] : ps.tensors) bytes += static_cast<std::size_t>(t.numel()) * sizeof(float);
  if (boundary_->tied_replica.defined()) bytes += static_cast<std::size_t>(boundary_->tied_replica.numel()) * sizeof(float);
  return bytes;
}

}  // namespace troupe
