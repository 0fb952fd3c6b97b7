// Tensor construction, views and host-side copies.
#include "runtime/tensor.h"

#include <malloc.h>

#include <cstdlib>
#include <cstring>

namespace troupe {

std::int64_t shape_numel(const Shape& shape) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

namespace {
// A training step allocates the same activations every step and frees them at its end. glibc's defaults give
// those pages back to the kernel (blocks over its mmap threshold are unmapped on free; the heap's top is
// trimmed), so every step faulted them in again and zeroed them: about 16,000 page faults a step, 4% of the
// default GPT's CPU time. Blocks up to 32 MB (glibc's largest threshold) now come from the heap and freed
// memory stays with the process for the next step.
void keep_freed_host_memory() {
  static const bool once = [] {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    return true;
  }();
  (void)once;
}
}  // namespace

std::shared_ptr<Storage> Storage::allocate_cpu(std::size_t bytes) {
  keep_freed_host_memory();
  auto s = std::make_shared<Storage>();
  std::size_t rounded = (bytes + 63) / 64 * 64;
  s->data = rounded ? std::aligned_alloc(64, rounded) : nullptr;
  if (rounded && !s->data) throw Error(ErrorKind::kInternal, "out of host memory allocating " + std::to_string(bytes) + " bytes");
  s->bytes = bytes;
  s->device = Device::cpu();
  s->deleter = [](void* p) { std::free(p); };
  return s;
}

Tensor Tensor::empty(Shape shape, DType dtype) {
  for (auto d : shape) TROUPE_CHECK(d >= 0, "negative dimension in ", shape_str(shape));
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.storage_ = Storage::allocate_cpu(t.nbytes());
  return t;
}

Tensor Tensor::zeros(Shape shape, DType dtype) {
  Tensor t = empty(std::move(shape), dtype);
  if (t.nbytes()) std::memset(t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::full(Shape shape, float value) {
  Tensor t = empty(std::move(shape));
  t.fill(value);
  return t;
}

Tensor Tensor::from_f32(Shape shape, std::span<const float> values) {
  TROUPE_CHECK(shape_numel(shape) == static_cast<std::int64_t>(values.size()), shape_str(shape), " vs ", values.size());
  Tensor t = empty(std::move(shape));
  if (!values.empty()) std::memcpy(t.raw(), values.data(), values.size() * 4);
  return t;
}

Tensor Tensor::from_i32(Shape shape, std::span<const std::int32_t> values) {
  TROUPE_CHECK(shape_numel(shape) == static_cast<std::int64_t>(values.size()), shape_str(shape), " vs ", values.size());
  Tensor t = empty(std::move(shape), DType::i32);
  if (!values.empty()) std::memcpy(t.raw(), values.data(), values.size() * 4);
  return t;
}

Tensor Tensor::on_storage(std::shared_ptr<Storage> storage, Shape shape, DType dtype) {
  for (auto d : shape) TROUPE_CHECK(d >= 0, "negative dimension in ", shape_str(shape));
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  TROUPE_CHECK(storage && storage->bytes >= t.nbytes(), "storage of ", storage ? storage->bytes : 0, " bytes for ",
               shape_str(t.shape_), " ", dtype_name(dtype));
  t.storage_ = std::move(storage);
  return t;
}

float* Tensor::f32() const {
  TROUPE_CHECK(dtype_ == DType::f32, "tensor is ", dtype_name(dtype_), ", not f32");
  return static_cast<float*>(raw());
}
std::int32_t* Tensor::i32() const {
  TROUPE_CHECK(dtype_ == DType::i32, "tensor is ", dtype_name(dtype_), ", not i32");
  return static_cast<std::int32_t*>(raw());
}
std::int64_t* Tensor::i64() const {
  TROUPE_CHECK(dtype_ == DType::i64, "tensor is ", dtype_name(dtype_), ", not i64");
  return static_cast<std::int64_t*>(raw());
}
std::uint16_t* Tensor::bf16() const {
  TROUPE_CHECK(dtype_ == DType::bf16, "tensor is ", dtype_name(dtype_), ", not bf16");
  return static_cast<std::uint16_t*>(raw());
}

Tensor Tensor::slice(std::int64_t begin, std::int64_t end) const {
  TROUPE_CHECK(ndim() >= 1 && 0 <= begin && begin <= end && end <= shape_[0], "slice [", begin, ", ", end, ") of ", shape_str(shape_));
  Tensor t = *this;
  std::int64_t row = numel() / (shape_[0] ? shape_[0] : 1);
  t.offset_ += static_cast<std::size_t>(begin * row) * dtype_size(dtype_);
  t.shape_[0] = end - begin;
  return t;
}

Tensor Tensor::view(Shape shape) const {
  TROUPE_CHECK(shape_numel(shape) == numel(), "view ", shape_str(shape), " of ", shape_str(shape_));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::clone() const {
  TROUPE_CHECK(device().is_cpu(), "clone of a ", device().str(), " tensor needs its backend");
  Tensor t = empty(shape_, dtype_);
  if (nbytes()) std::memcpy(t.raw(), raw(), nbytes());
  return t;
}

Tensor Tensor::to(DType dtype) const {
  TROUPE_CHECK(device().is_cpu(), "conversion of a ", device().str(), " tensor needs its backend");
  if (dtype == dtype_) return clone();
  Tensor t = empty(shape_, dtype);
  std::int64_t n = numel();
  if (dtype_ == DType::f32 && dtype == DType::bf16) {
    for (std::int64_t i = 0; i < n; ++i) t.bf16()[i] = f32_to_bf16(f32()[i]);
  } else if (dtype_ == DType::bf16 && dtype == DType::f32) {
    for (std::int64_t i = 0; i < n; ++i) t.f32()[i] = bf16_to_f32(bf16()[i]);
  } else {
    TROUPE_CHECK(false, "conversion ", dtype_name(dtype_), " -> ", dtype_name(dtype), " not supported");
  }
  return t;
}

void Tensor::fill(float value) const {
  TROUPE_CHECK(device().is_cpu(), "fill of a ", device().str(), " tensor needs its backend");
  float* p = f32();
  for (std::int64_t i = 0, n = numel(); i < n; ++i) p[i] = value;
}

void Tensor::copy_from(const Tensor& src) const {
  TROUPE_CHECK(src.shape_ == shape_ && src.dtype_ == dtype_, "copy ", shape_str(src.shape_), " into ", shape_str(shape_));
  TROUPE_CHECK(device().is_cpu() && src.device().is_cpu(), "copy from ", src.device().str(), " to ", device().str(),
               " needs a backend (CudaBackend::copy)");
  if (nbytes()) std::memcpy(raw(), src.raw(), nbytes());
}

std::vector<float> Tensor::to_vector() const {
  TROUPE_CHECK(device().is_cpu(), "to_vector of a ", device().str(), " tensor: download it first");
  if (dtype_ == DType::bf16) return to(DType::f32).to_vector();
  const float* p = f32();
  return std::vector<float>(p, p + numel());
}

}  // namespace troupe
