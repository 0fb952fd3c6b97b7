// Owns LossLayer: a Layer whose forward ends in class probabilities, so evaluation can read predictions.
#pragma once

#include "models/layer.h"

namespace troupe {

class LossLayer : public Layer {
 public:
  // Class probabilities [rows, classes] of the micro-batch whose forward filled ctx.
  virtual Tensor probabilities(const LayerCtx& ctx) const = 0;
};

}  // namespace troupe
