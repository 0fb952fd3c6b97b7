// Backend: defaults for the optional parts of the interface (exact gradient sums, convolutional and recurrent ops).
#include "runtime/backend.h"

#include "runtime/error.h"

namespace troupe {

std::span<ExactSum> Backend::exact_grad(const Tensor&) {
  throw Error(ErrorKind::kConfig, "train.deterministic = true: exact gradient sums are implemented by the CPU "
                                  "backend only; use train.device = cpu or train.deterministic = false");
}

void Backend::flush_exact_grad(const Tensor& grad) { exact_grad(grad); }

void Backend::set_precision(Precision precision) {
  if (precision == Precision::f32) return;
  throw Error(ErrorKind::kConfig, "train.precision = bf16 is not implemented by the " + device().str() +
                                      " backend here; use train.device = cpu or train.precision = f32");
}

namespace {
[[noreturn]] void not_supported(const Backend& be, const char* op, const char* kind = "cnn") {
  throw Error(ErrorKind::kConfig, std::string(op) + " is not supported on " + be.device().str() +
                                      " yet (model.kind = " + kind + " trains on the CPU backend); use train.device = cpu");
}
}  // namespace

void Backend::linear_forward_exact(const Tensor&, const Tensor&, const Tensor&, std::int64_t, std::span<ExactSum>) {
  exact_grad(Tensor());
}
void Backend::linear_input_grad_exact(const Tensor&, const Tensor&, std::int64_t, std::span<ExactSum>) {
  exact_grad(Tensor());
}

void Backend::conv2d_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, int, int) {
  not_supported(*this, "conv2d");
}
void Backend::conv2d_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                              int, int) {
  not_supported(*this, "conv2d");
}
void Backend::batchnorm_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool, float,
                                float, const Tensor&, const Tensor&, const Tensor&, ReplicaSum*) {
  not_supported(*this, "batch normalisation");
}
void Backend::batchnorm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                 const Tensor&, const Tensor&, const Tensor&, ReplicaSum*) {
  not_supported(*this, "batch normalisation");
}
void Backend::avgpool_forward(const Tensor&, const Tensor&) { not_supported(*this, "average pooling"); }
void Backend::avgpool_backward(const Tensor&, const Tensor&) { not_supported(*this, "average pooling"); }
void Backend::lstm_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  not_supported(*this, "the LSTM recurrence", "lstm");
}
void Backend::lstm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  not_supported(*this, "the LSTM recurrence", "lstm");
}

}  // namespace troupe
