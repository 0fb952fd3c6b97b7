// Owns StepStats and EvalStats: what one training step and one evaluation report, for every trainer
// and for applications embedding troupe (actors/session.h). Includes nothing of troupe's.
#pragma once

#include <cstdint>
#include <string>

namespace troupe {

struct StepStats {
  std::int64_t step = 0;
  double loss = 0.0;        // mean loss of this step's batch, before the update
  double lr = 0.0;
  double grad_norm = 0.0;   // global 2-norm before clipping (computed only when clipping)
  double seconds = 0.0;
  double tokens_per_s = 0.0;  // loss terms (tokens, or samples for the mlp) per second
  // train.on_nonfinite = skip: the loss or a gradient was NaN or Inf, and the update was not applied;
  // `nonfinite` says what (runtime/nonfinite.h: describe_nonfinite). Under stop such a step throws.
  bool skipped = false;
  std::string nonfinite;
};

struct EvalStats {
  double loss = 0.0;
  double accuracy = -1.0;  // fraction of rows whose arg-max matches the target; -1 if not computed
  double auc = -1.0;       // the recommender (deepfm): test ROC AUC, `loss` its log-loss; -1 if not computed
  std::int64_t rows = 0;
};

}  // namespace troupe
