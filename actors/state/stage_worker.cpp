// StageWorker: executes a stage's pipeline program over its model chunks.
#include "actors/state/stage_worker.h"

#include <algorithm>
#include <limits>
#include <thread>

#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <type_traits>

#include "models/sequence_grads.h"
#include "runtime/optim/clip_grad.h"
#include "runtime/optim/shard_sum_squares.h"

namespace troupe {

namespace {
constexpr int kActivation = 0;

// The synthetic cost of a deliberately slow stage: the instruction that began at `start` ends exactly
// at start + `cost`, its real compute included (a tiny model's compute is then part of the cost, not
// an addition the simulator does not know of). A sleep that ends early, then a spin to the deadline: a
// plain sleep wakes late (here a median 60 us even with the timer slack at its minimum), and that
// lateness would be counted as pipeline overhead although no runtime caused it.
void synthetic_delay(std::chrono::steady_clock::time_point start, std::chrono::microseconds cost) {
#ifdef __linux__
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
#endif
  const auto deadline = start + cost;
  constexpr auto kSpin = std::chrono::microseconds(150);  // above the wake-up lateness measured here
  if (deadline - std::chrono::steady_clock::now() > kSpin) std::this_thread::sleep_until(deadline - kSpin);
  while (std::chrono::steady_clock::now() < deadline) {
  }
}
constexpr int kGrad = 1;
}  // namespace

StageWorker::StageWorker(int stage, pipeline::Layout layout, const std::vector<LayerSpec>& specs,
                         const std::vector<std::size_t>& boundaries, pipeline::Program program, Backend& backend,
                         const OptimConfig& optim)
    : stage_(stage), layout_(layout), program_(std::move(program)), backend_(backend), tied_weight_(tied_weight_of(specs)) {
  TROUPE_CHECK(static_cast<int>(boundaries.size()) == layout.num_virtual() + 1, "boundaries ", boundaries.size(),
               " for ", layout.num_virtual(), " virtual stages");
  for (int c = 0; c < layout.virtual_stages; ++c) {
    const int k = layout.virtual_stage(stage, c);
    chunks_.push_back(std::make_unique<Model>(specs, boundaries[k], boundaries[k + 1]));
  }
  optimizer_ = make_optimizer(optim);
}

std::vector<Param*> StageWorker::params() const {
  std::vector<Param*> all;
  for (const auto& m : chunks_)
    for (Param* p : m->params().all()) all.push_back(p);
  return all;
}

void StageWorker::begin_step(const Batch& batch, int microbatches, float loss_scale, std::int64_t row_block) {
  const std::int64_t samples = batch.inputs.dim(0);
  TROUPE_CHECK(microbatches >= 1 && samples % microbatches == 0, samples, " samples in ", microbatches, " micro-batches");
  const std::int64_t per = samples / microbatches;
  microbatches_.clear();
  for (int i = 0; i < microbatches; ++i)
    microbatches_.push_back({.inputs = batch.inputs.slice(i * per, (i + 1) * per),
                             .targets = batch.targets.slice(i * per, (i + 1) * per),
                             .loss_scale = loss_scale,
                             .row_block = row_block,
                             .replica_sum = replica_sum_.get()});
  ctxs_.assign(microbatches, {});
  for (auto& per_mb : ctxs_)
    for (const auto& m : chunks_) per_mb.push_back(m->make_contexts());
  losses_.assign(microbatches, Tensor());
  cursor_ = 0;
  backwards_done_.assign(chunks_.size(), 0);
  grads_final_ = false;
  if (sync_) sync_->begin_step();
}

void StageWorker::attach_gradient_sync(std::unique_ptr<GradientSync> sync) {
  std::vector<Model*> chunks;
  for (auto& m : chunks_) chunks.push_back(m.get());
  sync->bind(stage_, std::move(chunks), backend_);
  if (trace_) sync->set_trace(trace_, track_);
  sync_ = std::move(sync);
}

void StageWorker::deliver(StageMessage message) {
  if (message.kind == StageMessage::Kind::credit) {
    --credits_used_[message.chunk];
    return;
  }
  const int kind = message.kind == StageMessage::Kind::activation ? kActivation : kGrad;
  // A restarted neighbour redoing the step sends again what this stage has (bitwise the same message).
  if (keep_sent_ && !received_.insert({kind, message.mb, message.chunk}).second) return;
  inbox_[{kind, message.mb, message.chunk}] = std::move(message.tensor);
}

StageWorker::Status StageWorker::advance(std::vector<Outgoing>& out) {
  if (trace_ && blocked_since_ >= 0.0) {
    trace_->span(track_, "wait", "idle", blocked_since_, trace_->now_us());
    blocked_since_ = -1.0;
  }
  while (cursor_ < program_.size()) {
    if (std::holds_alternative<pipeline::OptimizerStep>(program_[cursor_])) {
      finalize_grads();
      return Status::at_step;
    }
    const std::size_t before = out.size();
    if (cursor_ == kill_at_) {
      kill_at_ = SIZE_MAX;
      return Status::killed;
    }
    if (cursor_ == fault_at_ && (fault_at_ = SIZE_MAX, true))
      throw Error(ErrorKind::kInternal, "injected fault at " + pipeline::to_string(program_[cursor_]));
    const double begin = trace_ ? trace_->now_us() : 0.0;
    if (!run(program_[cursor_], out)) {
      if (trace_) blocked_since_ = begin;
      return Status::blocked;
    }
    if (trace_) {
      const pipeline::Instr& in = program_[cursor_];
      const char* category = std::holds_alternative<pipeline::Forward>(in)    ? "forward"
                             : std::holds_alternative<pipeline::Backward>(in) ? "backward"
                             : pipeline::is_communication(in) && !std::holds_alternative<pipeline::RecvActivation>(in) &&
                                       !std::holds_alternative<pipeline::RecvGrad>(in)
                                 ? "send"
                                 : nullptr;
      if (category) trace_->span(track_, pipeline::to_string(in), category, begin, trace_->now_us(), pipeline::microbatch_of(in));
    }
    ++cursor_;
    if (out.size() != before) return Status::sent;
  }
  finalize_grads();
  return Status::at_step;
}

void StageWorker::finalize_grads() {
  if (grads_final_) return;
  grads_final_ = true;
  const double begin = trace_ ? trace_->now_us() : 0.0;
  if (sync_) sync_->finish_backward();
  // Sequence parallelism's LayerNorm gradients, each shard's tokens' share: summed over the tensor group
  // (after the replicas' average, with which a sum commutes; before the exact sums are rounded).
  for (auto& m : chunks_) sum_sequence_partial_grads(backend_, tensor_, m->params().all());
  for (auto& m : chunks_) m->flush_exact_grads(backend_);
  if (nan_armed_) {
    nan_armed_ = false;
    const std::vector<Param*> all = params();
    if (!all.empty()) all.front()->grad.f32()[0] = std::numeric_limits<float>::quiet_NaN();
  }
  if (trace_ && sync_ && sync_->replicas() > 1) trace_->span(track_, "wait for gradients", "comm", begin, trace_->now_us());
}

bool StageWorker::run(const pipeline::Instr& instr, std::vector<Outgoing>& out) {
  return std::visit(
      [&](const auto& in) -> bool {
        using T = std::decay_t<decltype(in)>;
        const int last = layout_.num_virtual() - 1;
        if constexpr (std::is_same_v<T, pipeline::Forward>) {
          const int k = vstage(in.chunk);
          const MicroBatch& mb = microbatches_.at(in.mb);
          Tensor x = mb.inputs;
          if (k > 0) {
            auto it = ready_.find({kActivation, in.mb, in.chunk});
            TROUPE_CHECK(it != ready_.end(), "forward of micro-batch ", in.mb, " before its activation was received");
            x = std::move(it->second);
            ready_.erase(it);
            if (credit_limit_ > 0) {  // hand the sender its slot back
              const int from = k - 1;
              out.push_back({layout_.stage_of(from),
                             {StageMessage::Kind::credit, in.mb, layout_.chunk_of(from), Tensor()}});
            }
          }
          const auto start = std::chrono::steady_clock::now();
          Tensor y = chunks_[in.chunk]->forward(backend_, mb, ctxs_[in.mb][in.chunk], x);
          if (compute_delay_.count()) synthetic_delay(start, compute_delay_);
          peak_in_flight_ = std::max(peak_in_flight_, ++in_flight_);
          ++computed_;
          if (k == last) losses_[in.mb] = y;
          else outputs_[{kActivation, in.mb, in.chunk}] = y;
          return true;
        } else if constexpr (std::is_same_v<T, pipeline::Backward>) {
          const int k = vstage(in.chunk);
          Tensor dy;
          if (k < last) {
            auto it = ready_.find({kGrad, in.mb, in.chunk});
            TROUPE_CHECK(it != ready_.end(), "backward of micro-batch ", in.mb, " before its gradient was received");
            dy = std::move(it->second);
            ready_.erase(it);
          }
          const auto start = std::chrono::steady_clock::now();
          // Only the last micro-batch's backward makes a layer's gradients final.
          const bool last_mb = ++backwards_done_.at(in.chunk) == static_cast<int>(microbatches_.size());
          std::function<void(std::size_t)> after_layer;
          if (sync_ && last_mb) after_layer = [this, chunk = in.chunk](std::size_t l) { sync_->layer_ready(chunk, l); };
          Tensor dx = chunks_[in.chunk]->backward(backend_, microbatches_.at(in.mb), ctxs_[in.mb][in.chunk], dy, after_layer);
          if (compute_delay_.count()) synthetic_delay(start, compute_delay_);
          --in_flight_;
          ++computed_;
          if (k > 0) outputs_[{kGrad, in.mb, in.chunk}] = dx;
          return true;
        } else if constexpr (std::is_same_v<T, pipeline::SendActivation> || std::is_same_v<T, pipeline::SendGrad>) {
          constexpr bool is_act = std::is_same_v<T, pipeline::SendActivation>;
          const int kind = is_act ? kActivation : kGrad;
          if (is_act && credit_limit_ > 0) {
            if (credits_used_[in.chunk] >= credit_limit_) return false;  // wait for a credit
            peak_unconsumed_ = std::max(peak_unconsumed_, ++credits_used_[in.chunk]);
          }
          auto it = outputs_.find({kind, in.mb, in.chunk});
          TROUPE_CHECK(it != outputs_.end(), "send of micro-batch ", in.mb, " before it was computed");
          const int to = vstage(in.chunk) + (is_act ? 1 : -1);
          out.push_back({layout_.stage_of(to),
                         {is_act ? StageMessage::Kind::activation : StageMessage::Kind::grad, in.mb,
                          layout_.chunk_of(to), std::move(it->second)}});
          outputs_.erase(it);
          // A copy: the receiver owns the tensor it gets and may reuse its storage.
          if (keep_sent_) {
            sent_.push_back(out.back());
            sent_.back().message.tensor = out.back().message.tensor.clone();
          }
          return true;
        } else if constexpr (std::is_same_v<T, pipeline::RecvActivation> || std::is_same_v<T, pipeline::RecvGrad>) {
          const int kind = std::is_same_v<T, pipeline::RecvActivation> ? kActivation : kGrad;
          auto it = inbox_.find({kind, in.mb, in.chunk});
          if (it == inbox_.end()) return false;
          ready_[{kind, in.mb, in.chunk}] = std::move(it->second);
          inbox_.erase(it);
          return true;
        } else {
          return false;  // OptimizerStep is handled by advance()
        }
      },
      instr);
}

TiedUse StageWorker::tied_replica() const {
  for (const auto& m : chunks_)
    for (std::size_t i = 0; i < m->num_layers(); ++i)
      if (TiedUse use = m->layer(i).tied_use(); use.weight && use.replica) return use;
  return {};
}

Param* StageWorker::tied_owner() const {
  if (tied_weight_.empty()) return nullptr;
  for (const auto& m : chunks_)
    if (Param* p = m->params().find(tied_weight_)) return p;
  return nullptr;
}

Tensor StageWorker::tied_grad() const {
  const TiedUse use = tied_replica();
  return use.weight ? *use.grad : Tensor();
}

bool StageWorker::owns_tied_weight() const { return tied_owner() != nullptr; }

void StageWorker::fold_tied_grad(const Tensor& grad) {
  Param* p = tied_owner();
  TROUPE_CHECK(p != nullptr, "stage ", stage_, " does not own the tied weight ", tied_weight_);
  backend_.add_inplace(p->grad, grad);
}

std::vector<std::vector<double>> StageWorker::finish_step(const Tensor& tied_grad) {
  if (tied_grad.defined() && owns_tied_weight()) fold_tied_grad(tied_grad);
  return finish_backward();
}

std::vector<std::vector<double>> StageWorker::finish_backward() {
  finalize_grads();
  for (const auto& m : chunks_) m->finish_grads();  // a head sharing its chunk with wte folds its tied gradient here
  std::vector<std::vector<double>> out;
  for (const auto& m : chunks_) out.push_back(shard_grad_sum_squares(tensor_, m->params().all(), exact_order_));
  if (sync_) return sync_->sum_squares(std::move(out));
  return out;
}

Tensor StageWorker::apply_step(double clip_coefficient, double lr, bool skip) {
  if (skip) update_begin_us_ = trace_ ? trace_->now_us() : 0.0;
  else update_params(clip_coefficient, lr);
  // Every replica decided alike (the coordinator's sums are replicated): finish_update's all-gather runs.
  return finish_update();
}

void StageWorker::update_params(double clip_coefficient, double lr) {
  update_begin_us_ = trace_ ? trace_->now_us() : 0.0;
  std::vector<Param*> all = sync_ ? sync_->owned(params()) : params();
  scale_grads(all, clip_coefficient);
  if (update_fault_armed_) {
    update_fault_armed_ = false;
    std::vector<Param*> half(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(all.size() / 2));
    optimizer_->step(half, lr);
    throw Error(ErrorKind::kInternal, "injected fault in the optimizer update of stage " + std::to_string(stage_) +
                                          ", after " + std::to_string(all.size() / 2) + " of " +
                                          std::to_string(all.size()) + " parameters");
  }
  optimizer_->step(all, lr);
}

Tensor StageWorker::finish_update() {
  const double begin = update_begin_us_;
  if (sync_) sync_->params_updated();
  for (auto& m : chunks_) m->zero_grad();
  ctxs_.clear();
  cursor_ = 0;
  blocked_since_ = -1.0;
  // Between steps nothing of a step is under way (restart_scope reads these for a stage that dies before
  // it begins the next one).
  backwards_done_.assign(chunks_.size(), 0);
  grads_final_ = false;
  sent_.clear();
  received_.clear();
  if (trace_) trace_->span(track_, "optimizer step", "optimizer", begin, trace_->now_us());
  if (Param* p = tied_owner()) return p->value;
  return {};
}

void StageWorker::set_tied_weight(const Tensor& value) {
  if (TiedUse use = tied_replica(); use.weight) use.weight->value.copy_from(value);
}

}  // namespace troupe

namespace troupe {

namespace {
// What a snapshot holds of a stage's chunks: parameters and buffers (batch-norm running statistics,
// which a forward pass moves and a re-run step must find as they were).
std::vector<Param*> snapshot_state(const std::vector<std::unique_ptr<Model>>& chunks) {
  std::vector<Param*> all;
  for (const auto& m : chunks)
    for (Param* p : m->params().state()) all.push_back(p);
  return all;
}
}  // namespace

StageSnapshot StageWorker::snapshot() const {
  StageSnapshot snap;
  snap.stage = stage_;
  for (const Param* p : snapshot_state(chunks_)) snap.params.emplace_back(p->name, p->value.clone());
  snap.optimizer = optimizer_->state().clone();
  if (TiedUse use = tied_replica(); use.weight) snap.tied_replica = use.weight->value.clone();
  return snap;
}

void StageWorker::restore(const StageSnapshot& snap) {
  const std::vector<Param*> mine = snapshot_state(chunks_);
  auto mismatch = [&](const std::string& what) {
    return Error(ErrorKind::kInput, "snapshot of stage " + std::to_string(snap.stage) + " does not fit stage " +
                                        std::to_string(stage_) + ": " + what);
  };
  if (snap.params.size() != mine.size())
    throw mismatch(std::to_string(snap.params.size()) + " parameters, the stage has " + std::to_string(mine.size()));
  for (std::size_t i = 0; i < mine.size(); ++i) {
    const auto& [name, value] = snap.params[i];
    if (name != mine[i]->name) throw mismatch("parameter " + std::to_string(i) + " is '" + name + "', expected '" + mine[i]->name + "'");
    if (value.shape() != mine[i]->value.shape())
      throw mismatch("'" + name + "' has shape " + shape_str(value.shape()) + ", expected " + shape_str(mine[i]->value.shape()));
  }
  for (std::size_t i = 0; i < mine.size(); ++i) mine[i]->value.copy_from(snap.params[i].second);
  optimizer_->state() = snap.optimizer.clone();
  if (TiedUse use = tied_replica(); use.weight && snap.tied_replica.defined())
    use.weight->value.copy_from(snap.tied_replica);
}

}  // namespace troupe
