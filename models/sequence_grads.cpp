// The partial LayerNorm gradients of sequence parallelism packed into one buffer and allreduced over the tensor group: exact sums in deterministic mode, floats otherwise.
#include "models/sequence_grads.h"

#include <algorithm>

#include "runtime/comm/tensor_parallel_ops.h"

namespace troupe {

namespace {
// `parts` packed into one buffer, allreduced over `group`, and written back.
template <class T>
void allreduce_packed(comm::TensorGroup group, const std::vector<std::span<T>>& parts) {
  std::vector<T> packed;
  for (std::span<T> p : parts) packed.insert(packed.end(), p.begin(), p.end());
  comm::allreduce_sum(group, std::span<T>(packed));
  std::size_t at = 0;
  for (std::span<T> p : parts) {
    std::copy_n(packed.begin() + static_cast<std::ptrdiff_t>(at), p.size(), p.begin());
    at += p.size();
  }
}
}  // namespace

void sum_sequence_partial_grads(Backend& be, comm::TensorGroup group, const std::vector<Param*>& params) {
  if (!group.split()) return;
  std::vector<Param*> partial;
  for (Param* p : params)
    if (p->sequence_partial) partial.push_back(p);
  if (partial.empty()) return;
  if (be.deterministic()) {
    std::vector<std::span<ExactSum>> parts;
    for (Param* p : partial) parts.push_back(be.exact_grad(p->grad));
    allreduce_packed(group, parts);
  } else {
    std::vector<std::span<float>> parts;
    for (Param* p : partial) parts.push_back(p->grad.span_f32());
    allreduce_packed(group, parts);
  }
}

}  // namespace troupe
