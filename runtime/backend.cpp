// Backend: defaults for the optional parts of the interface (exact gradient sums).
#include "runtime/backend.h"

#include "runtime/error.h"

namespace troupe {

std::span<ExactSum> Backend::exact_grad(const Tensor&) {
  throw Error(ErrorKind::kConfig, "train.deterministic = true: exact gradient sums are implemented by the CPU "
                                  "backend only; use train.device = cpu or train.deterministic = false");
}

void Backend::flush_exact_grad(const Tensor& grad) { exact_grad(grad); }

}  // namespace troupe
