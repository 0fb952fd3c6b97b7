// Owns the binary-classification metrics the recommender example reports: exact ROC AUC and log-loss.
#pragma once

#include <span>

namespace troupe {

// Area under the ROC curve, exactly: the Mann-Whitney U statistic from a sort of the scores, tied
// scores sharing their average rank (so a constant predictor scores 0.5). labels are 0 or 1.
// Throws troupe::Error (kInput) when the sizes differ, a label is not 0/1, or only one class is present.
double roc_auc(std::span<const float> scores, std::span<const float> labels);

// Mean binary cross-entropy of probabilities p against 0/1 labels, p clamped to [1e-7, 1 - 1e-7].
double log_loss(std::span<const float> probabilities, std::span<const float> labels);

}  // namespace troupe
