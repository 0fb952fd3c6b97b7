// Owns NcclCommunicator: an NCCL communicator over the ranks of one group, created through the actor control plane (built with CUDA and NCCL only).
//
// Creation is collective: rank 0 draws the NCCL unique id and sends its 128 bytes to every other rank
// over `control` (the group's ordinary Transport: in-process or TCP), then every rank joins with
// ncclCommInitRank on its own GPU. Use only for groups choose_collective_backend() accepts (distinct
// GPUs); one GPU shared by several ranks cannot form a communicator.
//
// allreduce_sum works in place on device buffers (f32 or bf16) and is queued on the caller's CUDA
// stream (a CudaBackend's stream()), so it orders after the backward kernels that wrote the gradients
// with no host synchronisation. Errors become troupe::Error (kIo) naming the NCCL error.
#pragma once

#include <cstdint>

#include "runtime/comm/transport.h"
#include "runtime/tensor.h"

namespace troupe::nccl {

// Tag of the unique-id message on the control transport.
inline constexpr std::uint32_t kUniqueIdTag = 0x4e43434c;  // "NCCL"

class NcclCommunicator {
 public:
  // Collective: every rank of `control` calls it, each with its own GPU.
  NcclCommunicator(comm::Transport& control, int device);
  ~NcclCommunicator();
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int device() const { return device_; }

  // buf = sum over ranks of buf (device memory on this rank's GPU), queued on `stream` (cudaStream_t).
  void allreduce_sum(const Tensor& buf, void* stream);

 private:
  int rank_ = 0, size_ = 1, device_ = 0;
  void* comm_ = nullptr;  // ncclComm_t
};

}  // namespace troupe::nccl
