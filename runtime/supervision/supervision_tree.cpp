// The supervision tree of a Topology, and how a node is named to a person.
#include "runtime/supervision/supervision_tree.h"

#include <fmt/format.h>

#include "runtime/error.h"

namespace troupe::supervision {

std::string_view kind_name(NodeKind kind) {
  switch (kind) {
    case NodeKind::job: return "job";
    case NodeKind::replica: return "replica";
    case NodeKind::stage: return "stage";
    case NodeKind::optimizer_state: return "optimizer-state";
    case NodeKind::gradient_exchange: return "gradient exchange";
    case NodeKind::shard: return "parameter-server shard";
    case NodeKind::worker: return "parameter-server worker";
    case NodeKind::tensor_shard: return "tensor-shard";
  }
  return "?";
}

Node make_supervision_tree(const plan::Topology& t) {
  Node job{NodeKind::job, "job", std::nullopt, plan::Place{}, {}};
  if (t.servers) {
    for (int s = 0; s < t.servers->shards; ++s)
      job.children.push_back(
          Node{NodeKind::shard, fmt::format("shard {}", s), std::nullopt, plan::Place{t.servers->process}, {}});
    for (int r = 0; r < t.world_size(); ++r)
      job.children.push_back(
          Node{NodeKind::worker, fmt::format("worker {}", r), r, t.places[static_cast<std::size_t>(r)], {}});
    return job;
  }
  for (int d = 0; d < t.size(plan::Axis::data); ++d) {
    const int first = t.rank_of({d, 0, 0});
    Node replica{NodeKind::replica, fmt::format("replica {}", d), std::nullopt, t.places[static_cast<std::size_t>(first)],
                 {}};
    for (int p = 0; p < t.size(plan::Axis::pipe); ++p) {
      const int rank = t.rank_of({d, p, 0});
      Node stage{NodeKind::stage, fmt::format("replica {}/stage {}", d, p), rank, t.places[static_cast<std::size_t>(rank)],
                 {}};
      // A tensor shard actor runs its shard's optimizer step and averages its gradients over its data
      // group itself (models/trainer.h): under tensor parallelism a stage's only actors are its shards.
      if (t.size(plan::Axis::tensor) == 1) {
        stage.children.push_back(Node{NodeKind::optimizer_state, stage.name + "/optimizer state", rank, stage.place, {}});
        if (t.size(plan::Axis::data) > 1)
          stage.children.push_back(
              Node{NodeKind::gradient_exchange, stage.name + "/gradient exchange", rank, stage.place, {}});
      } else {
        for (int x = 0; x < t.size(plan::Axis::tensor); ++x) {
          const int shard = t.rank_of({d, p, x});
          Node node{NodeKind::tensor_shard, fmt::format("{}/tensor {}", stage.name, x), shard,
                    t.places[static_cast<std::size_t>(shard)], {}};
          if (t.tensor_pipelines) {  // the shard is a stage actor with the stage's helpers
            node.children.push_back(Node{NodeKind::optimizer_state, node.name + "/optimizer state", shard, node.place, {}});
            if (t.size(plan::Axis::data) > 1)
              node.children.push_back(
                  Node{NodeKind::gradient_exchange, node.name + "/gradient exchange", shard, node.place, {}});
          }
          stage.children.push_back(std::move(node));
        }
      }
      replica.children.push_back(std::move(stage));
    }
    job.children.push_back(std::move(replica));
  }
  return job;
}

Node tensor_shard_view(const Node& replica, int tensor) {
  Node view = replica;
  for (Node& stage : view.children) {
    TROUPE_CHECK(tensor >= 0 && static_cast<std::size_t>(tensor) < stage.children.size() &&
                     stage.children[static_cast<std::size_t>(tensor)].kind == NodeKind::tensor_shard,
                 stage.name, " has no tensor shard ", tensor);
    Node shard = stage.children[static_cast<std::size_t>(tensor)];
    stage = std::move(shard);
  }
  return view;
}

const Node* find_node(const Node& root, const std::string& name) {
  if (root.name == name) return &root;
  for (const Node& c : root.children)
    if (const Node* n = find_node(c, name)) return n;
  return nullptr;
}

std::string describe_node(const Node& node, const plan::Topology& t) {
  std::string out = fmt::format("{} actor {}", kind_name(node.kind), node.name);
  std::string where = fmt::format("process {} on {}", node.place.process, node.place.host);
  if (node.kind != NodeKind::replica) where += ", " + node.place.device.str();  // a replica spans its stages' devices
  if (node.rank) {
    const plan::Coord c = t.coord_of(*node.rank);
    return out + fmt::format(" (rank {}: data {}, pipe {}, tensor {}; {})", *node.rank, c.data, c.pipe, c.tensor, where);
  }
  return out + " (" + where + ")";
}

namespace {
void describe_into(const Node& node, int depth, std::string& out) {
  out += fmt::format("{:{}}{}{}\n", "", 2 * depth, node.name, node.rank ? fmt::format(" (rank {})", *node.rank) : "");
  for (const Node& c : node.children) describe_into(c, depth + 1, out);
}
}  // namespace

std::string describe(const Node& root) {
  std::string out;
  describe_into(root, 0, out);
  return out;
}

}  // namespace troupe::supervision
