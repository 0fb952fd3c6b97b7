// Owns LocalTrainer: single-process training of a click-log recommender (WideDeep, either kind), the
// reference that parameter-server training is compared with (tests/test_wide_deep.cpp, test_deepfm.cpp).
#pragma once

#include <algorithm>
#include <map>
#include <memory>
#include <vector>

#include "actors/state/ps/sparse_table.h"
#include "models/wide_deep.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/data/click_log.h"
#include "runtime/optim/optimizer.h"

namespace troupe::testing {

// Single-process training: the whole model in one place (full tables, one optimizer), the global batch
// cut into `slices` consecutive parts whose gradients are summed in slice order exactly as the shards sum
// workers' pushes (first copied, the rest added). slices = 1 is plain whole-batch training.
struct LocalTrainer {
  WideDeep model;
  std::vector<ps::SparseTable> tables;
  std::unique_ptr<Optimizer> dense_opt, table_opt;
  double lr;
  CpuBackend be{1};

  LocalTrainer(const WideDeepOptions& m, const OptimConfig& optim) : model(m), lr(optim.lr_or_default()) {
    for (std::size_t t = 0; t < model.tables().size(); ++t) {
      const TableSpec& spec = model.tables()[t];
      std::vector<std::int64_t> rows(static_cast<std::size_t>(spec.rows));
      for (std::int64_t r = 0; r < spec.rows; ++r) rows[static_cast<std::size_t>(r)] = r;
      Tensor value = Tensor::empty({spec.rows, spec.dim});
      model.init_rows(static_cast<int>(t), rows, value);
      tables.emplace_back(spec.name, value);
    }
    dense_opt = make_optimizer(optim);
    table_opt = make_optimizer(optim);
  }

  // One step on `batch`; returns the mean loss.
  double step(const ClickBatch& batch, int slices) {
    const std::int64_t B = batch.size(), b = B / slices;
    std::vector<Param*>& params = model.dense().all();
    std::vector<Tensor> dense_sum(params.size());
    std::vector<std::map<std::int64_t, Tensor>> rows_sum(tables.size());
    double loss = 0;
    for (int w = 0; w < slices; ++w) {
      const ClickBatch part = batch.slice(w * b, (w + 1) * b);
      const auto lookups = model.lookup(part);
      std::vector<Tensor> rows;
      for (std::size_t t = 0; t < tables.size(); ++t) rows.push_back(tables[t].gather(lookups[t].ids));
      for (Param* p : params) p->grad = Tensor::zeros(p->value.shape());
      const WideDeep::Pass pass = model.forward_backward(be, part, lookups, rows, 1.0f / static_cast<float>(B));
      loss += pass.loss_sum;
      for (std::size_t d = 0; d < params.size(); ++d) {
        if (!dense_sum[d].defined()) dense_sum[d] = params[d]->grad.clone();
        else
          for (std::int64_t i = 0; i < dense_sum[d].numel(); ++i) dense_sum[d].f32()[i] += params[d]->grad.f32()[i];
      }
      for (std::size_t t = 0; t < tables.size(); ++t) {
        const std::int64_t dim = tables[t].dim();
        for (std::size_t i = 0; i < lookups[t].ids.size(); ++i) {
          const Tensor row = pass.table_grads[t].slice(static_cast<std::int64_t>(i), static_cast<std::int64_t>(i) + 1);
          auto it = rows_sum[t].find(lookups[t].ids[i]);
          if (it == rows_sum[t].end()) rows_sum[t].emplace(lookups[t].ids[i], row.clone());
          else
            for (std::int64_t c = 0; c < dim; ++c) it->second.f32()[c] += row.f32()[c];
        }
      }
    }
    for (std::size_t d = 0; d < params.size(); ++d) params[d]->grad = dense_sum[d];
    dense_opt->step(params, lr);
    for (std::size_t t = 0; t < tables.size(); ++t) {
      std::vector<std::int64_t> ids;
      Tensor grad = Tensor::empty({static_cast<std::int64_t>(rows_sum[t].size()), tables[t].dim()});
      std::int64_t k = 0;
      for (const auto& [id, row] : rows_sum[t]) {
        ids.push_back(id);
        std::copy(row.f32(), row.f32() + tables[t].dim(), grad.f32() + k++ * tables[t].dim());
      }
      tables[t].apply(*table_opt, ids, grad, lr);
    }
    return loss / static_cast<double>(B);
  }
};

}  // namespace troupe::testing
