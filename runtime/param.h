// Owns Param and ParamSet: named parameters with their gradients, in a stable registration order.
//
// A Param's name is its stable identity (nanoGPT's names for the GPT), used by checkpoints, weight
// files and optimizer state. Order of registration is the order of iteration, so anything that walks
// the parameters (clipping, optimizer steps, export) does so in the same order every run.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/tensor.h"

namespace troupe {

struct Param {
  std::string name;
  Tensor value;  // f32 master weights
  Tensor grad;   // same shape; accumulated by backward passes, zeroed by zero_grad()
};

class ParamSet {
 public:
  // Creates value (uninitialised) and grad (zeros) for a new parameter; names must be unique.
  Param& add(const std::string& name, Shape shape);
  Param* find(const std::string& name);
  const Param* find(const std::string& name) const;
  Param& at(const std::string& name);  // throws troupe::Error naming the missing parameter

  std::vector<Param*>& all() { return ordered_; }
  const std::vector<Param*>& all() const { return ordered_; }
  std::size_t size() const { return ordered_.size(); }
  std::int64_t numel() const;

  void zero_grad();

 private:
  std::vector<std::unique_ptr<Param>> storage_;
  std::vector<Param*> ordered_;
  std::unordered_map<std::string, Param*> by_name_;
};

}  // namespace troupe
