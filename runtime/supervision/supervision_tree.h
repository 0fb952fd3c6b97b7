// Owns the supervision tree: who supervises whom in a job, as a value made from the Topology —
// job -> replica -> stage and its helpers (gradient exchange, tensor shards), or job -> parameter-server
// shards and workers. Every node carries its place in the Topology, so a supervisor that sees a child die can say
// which actor it was and where it lived. Printed by `troupe train --print-plan`; tested as a value.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "runtime/plan/topology.h"

namespace troupe::supervision {

enum class NodeKind { job, replica, stage, optimizer_state, gradient_exchange, shard, worker, tensor_shard };
std::string_view kind_name(NodeKind kind);

struct Node {
  NodeKind kind = NodeKind::job;
  std::string name;             // unique in the tree: "replica 1/stage 0"
  std::optional<int> rank;      // a rank of the Topology (stage, its helpers, ps worker)
  plan::Place place;            // where it runs
  std::vector<Node> children;
};

// The tree of `topology`. A job with one replica keeps the replica level (the replica supervises its
// stages); every stage has its optimizer-state actor as a child, and its gradient exchange when the
// data axis is wider than 1, and its tensor shards ("replica d/stage p/tensor t") when the tensor axis is.
// Tensor shards run as stage actors of pipelines (Topology::tensor_pipelines) have the stage's helpers
// under each shard instead: "replica d/stage p/tensor t/optimizer state".
Node make_supervision_tree(const plan::Topology& topology);

// What the pipeline of tensor rank `tensor` of a replica supervises: `replica` with each stage node
// replaced by its shard `tensor`'s node (a stage actor of that pipeline is that shard).
Node tensor_shard_view(const Node& replica, int tensor);

// The node named `name`, or nullptr.
const Node* find_node(const Node& root, const std::string& name);

// "stage actor replica 1/stage 0 (rank 2: data 1, pipe 0, tensor 0; process 0 on localhost, cpu:0)".
std::string describe_node(const Node& node, const plan::Topology& topology);

// The tree, one node a line, indented by depth.
std::string describe(const Node& root);

}  // namespace troupe::supervision
