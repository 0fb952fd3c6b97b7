// Owns `troupe eval`: the held-out quality of a trained model given its weights file.
#pragma once

#include "cli/weights_input.h"

namespace CLI {
class App;
}

namespace troupe {

// Adds `eval` (its options bound to `input`) to the program; returns the subcommand.
CLI::App* add_eval_subcommand(CLI::App& app, WeightsInput& input);

// Prints the validation loss (gpt, lstm) or the test accuracy and loss (mlp, cnn); returns the exit code.
// Throws troupe::Error for bad input (a missing or corrupt weights file, a shape mismatch).
int run_eval(const WeightsInput& input);

}  // namespace troupe
