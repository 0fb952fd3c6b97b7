// Owns TensorGroup: the tensor-parallel group one shard belongs to, as a layer sees it (its rank, its size, and the transport its collectives run over).
//
// Layers (models/) get it at construction; it is a plain value over the comm::Transport interface, so
// models/ depend on nothing above runtime/. A default TensorGroup is one shard alone (T = 1): every
// operation of runtime/comm/tensor_parallel_ops.h is then the identity, and a layer built with it is
// the single-device layer.
//
// sequence_parallel (parallel.sequence_parallel): the GPT's LayerNorm and residual regions hold only
// this shard's run of each sample's tokens (runtime/comm/tensor_parallel_ops.h, "sequence split"); the
// layers ask sequence_split(), which is false for a group of one.
#pragma once

#include "runtime/comm/transport.h"

namespace troupe::comm {

struct TensorGroup {
  TensorGroup() = default;
  TensorGroup(Transport* t, bool sequence = false) : transport(t), sequence_parallel(sequence) {}  // NOLINT: implicit

  Transport* transport = nullptr;  // null: a group of one
  bool sequence_parallel = false;

  int rank() const { return transport ? transport->rank() : 0; }
  int size() const { return transport ? transport->size() : 1; }
  bool split() const { return size() > 1; }
  // Whether activations are split along the sequence over this group.
  bool sequence_split() const { return sequence_parallel && split(); }
};

}  // namespace troupe::comm
