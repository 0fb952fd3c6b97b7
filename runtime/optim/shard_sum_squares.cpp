// shard_grad_sum_squares: whole gradients' sums of squares over a tensor group, gathered or allreduced.
#include "runtime/optim/shard_sum_squares.h"

#include <span>

#include "runtime/comm/tensor_parallel_ops.h"
#include "runtime/optim/clip_grad.h"

namespace troupe {

std::vector<double> shard_grad_sum_squares(comm::TensorGroup group, const std::vector<Param*>& params, bool exact_order) {
  std::vector<double> out = grad_sum_squares(params);
  if (!group.split()) return out;
  // grad_sum_squares skips parameters without a gradient: the index of each one's sum.
  std::vector<Param*> with_grad;
  for (Param* p : params)
    if (p->grad.defined()) with_grad.push_back(p);
  if (exact_order) {
    for (std::size_t i = 0; i < with_grad.size(); ++i) {
      const Param* p = with_grad[i];
      if (!p->split.split()) continue;
      Param grad_as_value{p->name, p->grad, Tensor(), p->split}, whole;
      whole.grad = comm::gather_whole(group, grad_as_value);
      out[i] = grad_sum_squares({&whole}).at(0);
    }
    return out;
  }
  std::vector<double> split;
  for (std::size_t i = 0; i < with_grad.size(); ++i)
    if (with_grad[i]->split.split()) split.push_back(out[i]);
  comm::allreduce_sum(group, std::span<double>(split));
  std::size_t at = 0;
  for (std::size_t i = 0; i < with_grad.size(); ++i)
    if (with_grad[i]->split.split()) out[i] = split[at++];
  return out;
}

}  // namespace troupe
