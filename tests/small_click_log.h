// Owns the small click log and recommender models the recommender tests train (tests/test_wide_deep.cpp,
// tests/test_deepfm.cpp, tests/deepfm_trace.cpp): small enough for 2 cores, with tables of every size.
#pragma once

#include "models/wide_deep.h"
#include "runtime/data/click_log.h"

namespace troupe::testing {

// Three categorical fields of 5000, 800 and 60 ids, 3 dense features, 64 Ki training and 4 Ki test samples.
inline ClickLogOptions small_click_data() {
  ClickLogOptions d;
  d.cardinalities = {5000, 800, 60};
  d.dense_features = 3;
  d.train_samples = 1 << 16;
  d.test_samples = 4096;
  d.seed = 7;
  return d;
}

// A `kind` model (Wide & Deep or DeepFM) for data `d`: embeddings of 4, deep layers of 16 and 8, 4096 wide buckets.
inline WideDeepOptions small_recommender(RecommenderKind kind, const ClickLogOptions& d) {
  WideDeepOptions m;
  m.kind = kind;
  m.cardinalities = d.cardinalities;
  m.dense_features = d.dense_features;
  m.embed_dim = 4;
  m.hidden = {16, 8};
  m.wide_buckets = 4096;
  m.seed = 3;
  return m;
}

}  // namespace troupe::testing
