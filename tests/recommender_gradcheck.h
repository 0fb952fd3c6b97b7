// Owns the finite-difference check of a recommender's analytic gradients (tests/test_wide_deep.cpp,
// tests/test_deepfm.cpp): its dense parameters and the embedding rows one batch looks up.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "models/wide_deep.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/data/click_log.h"

namespace troupe::testing {

// Table rows for `lookups` that are not the initial ones (so the wide rows are not all zero): rows[t] holds
// table t's rows for lookups[t].ids.
inline std::vector<Tensor> varied_rows(const WideDeep& model, const std::vector<TableLookup>& lookups) {
  std::vector<Tensor> rows;
  for (std::size_t t = 0; t < lookups.size(); ++t) {
    Tensor r = Tensor::empty({static_cast<std::int64_t>(lookups[t].ids.size()), model.tables()[t].dim});
    for (std::int64_t i = 0; i < r.numel(); ++i) r.f32()[i] = 0.3f * std::sin(1.7f * static_cast<float>(i + 7 * t) + 0.4f);
    rows.push_back(r);
  }
  return rows;
}

// The analytic gradients of `model`'s loss sum over `batch` against central differences (step 1e-2, in
// float): three elements of each dense parameter, and of each looked-up table's rows every element
// (every_row_element) or the first and the last.
inline void check_recommender_gradients(WideDeep& model, CpuBackend& be, const ClickBatch& batch,
                                        const std::vector<TableLookup>& lookups, std::vector<Tensor>& rows,
                                        bool every_row_element) {
  auto loss = [&] {
    for (Param* p : model.dense().all()) p->grad = Tensor::zeros(p->value.shape());
    return model.forward_backward(be, batch, lookups, rows, 1.0f).loss_sum;
  };
  for (Param* p : model.dense().all()) p->grad = Tensor::zeros(p->value.shape());
  const WideDeep::Pass pass = model.forward_backward(be, batch, lookups, rows, 1.0f);
  std::vector<Tensor> dense_grads;
  for (Param* p : model.dense().all()) dense_grads.push_back(p->grad.clone());
  auto numeric = [&](float* v) {
    const float keep = *v, h = 1e-2f;
    *v = keep + h;
    const double up = loss();
    *v = keep - h;
    const double down = loss();
    *v = keep;
    return (up - down) / (2.0 * h);
  };
  for (std::size_t j = 0; j < model.dense().all().size(); ++j) {
    Param* p = model.dense().all()[j];
    for (std::int64_t i : {std::int64_t{0}, p->value.numel() / 2, p->value.numel() - 1}) {
      INFO(p->name << "[" << i << "]");
      CHECK(dense_grads[j].f32()[i] == Approx(numeric(p->value.f32() + i)).margin(2e-3).epsilon(2e-2));
    }
  }
  for (std::size_t t = 0; t < rows.size(); ++t) {
    std::vector<std::int64_t> elements = {0, rows[t].numel() - 1};
    if (every_row_element) {
      elements.clear();
      for (std::int64_t i = 0; i < rows[t].numel(); ++i) elements.push_back(i);
    }
    for (std::int64_t i : elements) {
      INFO(model.tables()[t].name << " element " << i);
      CHECK(pass.table_grads[t].f32()[i] == Approx(numeric(rows[t].f32() + i)).margin(2e-3).epsilon(2e-2));
    }
  }
}

}  // namespace troupe::testing
