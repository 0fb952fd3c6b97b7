// NcclCommunicator (built with CUDA and NCCL only): unique id over the control transport, ncclCommInitRank, in-place allreduce on a stream.
#include "net/nccl/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstring>
#include <string>

#include "runtime/error.h"

namespace troupe::nccl {

namespace {
void check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess)
    throw Error(ErrorKind::kIo, std::string("NCCL ") + what + " failed: " + ncclGetErrorString(r));
}
}  // namespace

NcclCommunicator::NcclCommunicator(comm::Transport& control, int device)
    : rank_(control.rank()), size_(control.size()), device_(device) {
  ncclUniqueId id;
  std::memset(&id, 0, sizeof id);
  auto bytes = [&] { return std::span<std::byte>(reinterpret_cast<std::byte*>(&id), sizeof id); };
  if (rank_ == 0) {
    check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    for (int r = 1; r < size_; ++r) control.send(r, kUniqueIdTag, bytes());
  } else {
    control.recv(0, kUniqueIdTag, bytes());
  }
  if (cudaSetDevice(device) != cudaSuccess)
    throw Error(ErrorKind::kConfig, "NCCL rank " + std::to_string(rank_) + ": cuda:" + std::to_string(device) +
                                        " is not usable here");
  ncclComm_t comm = nullptr;
  check(ncclCommInitRank(&comm, size_, id, rank_), "ncclCommInitRank");
  comm_ = comm;
}

NcclCommunicator::~NcclCommunicator() {
  if (comm_) ncclCommDestroy(static_cast<ncclComm_t>(comm_));
}

void NcclCommunicator::allreduce_sum(const Tensor& buf, void* stream) {
  TROUPE_CHECK(buf.device() == Device::cuda(device_), "NCCL allreduce of a ", buf.device().str(),
               " tensor on the communicator of cuda:", device_);
  ncclDataType_t type;
  if (buf.dtype() == DType::f32) type = ncclFloat32;
  else if (buf.dtype() == DType::bf16) type = ncclBfloat16;
  else throw Error(ErrorKind::kInternal, "NCCL allreduce takes f32 or bf16 buffers");
  cudaSetDevice(device_);
  check(ncclAllReduce(buf.raw(), buf.raw(), static_cast<std::size_t>(buf.numel()), type, ncclSum,
                      static_cast<ncclComm_t>(comm_), static_cast<cudaStream_t>(stream)),
        "ncclAllReduce");
}

}  // namespace troupe::nccl
