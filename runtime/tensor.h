// Owns Tensor: a typed, shaped view onto contiguous storage that is shared by reference.
//
// Copying a Tensor copies the reference, not the data (clone() copies the data). slice() along the
// leading dimension is zero-copy: this is how a batch is cut into micro-batches. Storage knows its
// Device; CPU storage is 64-byte aligned host memory, other devices supply their own allocator.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/error.h"

namespace troupe {

using Shape = std::vector<std::int64_t>;

std::int64_t shape_numel(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[2, 3, 4]"

// A block of device memory; freed by its deleter when the last Tensor referring to it goes.
struct Storage {
  void* data = nullptr;
  std::size_t bytes = 0;
  Device device;
  std::function<void(void*)> deleter;

  Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage() {
    if (data && deleter) deleter(data);
  }
  // Uninitialised, 64-byte aligned host memory.
  static std::shared_ptr<Storage> allocate_cpu(std::size_t bytes);
};

class Tensor {
 public:
  Tensor() = default;

  // Uninitialised CPU tensor (fill it before reading it).
  static Tensor empty(Shape shape, DType dtype = DType::f32);
  static Tensor zeros(Shape shape, DType dtype = DType::f32);
  static Tensor full(Shape shape, float value);
  static Tensor from_f32(Shape shape, std::span<const float> values);
  static Tensor from_i32(Shape shape, std::span<const std::int32_t> values);
  // A tensor over `storage` (of any device, e.g. a CUDA backend's block), which must hold at least
  // shape's element count of dtype. Host-side helpers below (fill, copy_from, to, to_vector, clone)
  // work on CPU tensors only; device tensors are read and written through their backend.
  static Tensor on_storage(std::shared_ptr<Storage> storage, Shape shape, DType dtype = DType::f32);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  std::int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int ndim() const { return static_cast<int>(shape_.size()); }
  std::int64_t numel() const { return shape_numel(shape_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device : Device::cpu(); }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }

  void* raw() const { return static_cast<char*>(storage_->data) + offset_; }
  // Typed access; checks the dtype.
  float* f32() const;
  std::int32_t* i32() const;
  std::int64_t* i64() const;
  std::uint16_t* bf16() const;
  std::span<float> span_f32() const { return {f32(), static_cast<std::size_t>(numel())}; }

  // Rows [begin, end) of the leading dimension, sharing storage.
  Tensor slice(std::int64_t begin, std::int64_t end) const;
  // Same storage, another shape of the same element count.
  Tensor view(Shape shape) const;
  // A deep copy on the same device.
  Tensor clone() const;
  // Converts between f32 and bf16 (copy); same dtype returns a clone.
  Tensor to(DType dtype) const;
  void fill(float value) const;
  void copy_from(const Tensor& src) const;  // same shape and dtype
  std::vector<float> to_vector() const;     // f32 or bf16 as f32

  // True when both views refer to the same bytes (used to prove zero-copy paths).
  bool shares_storage_with(const Tensor& other) const { return storage_ == other.storage_; }

 private:
  std::shared_ptr<Storage> storage_;
  std::size_t offset_ = 0;  // bytes
  Shape shape_;
  DType dtype_ = DType::f32;
};

}  // namespace troupe
