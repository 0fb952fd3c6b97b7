// Owns `troupe report DIR [DIR...]`: the report page of one or more run directories (cli/run_dir.h).
//
// The page is DIR/report.html for the first DIR: one self-contained HTML file, plots as inline SVG (no
// scripts, no network): train and validation loss against steps and throughput against steps (every
// DIR overlaid), a table of the runs, per-stage compute/communication/idle time with the measured
// and the schedule's ideal bubble, a timeline of one step from the first run's trace, and its plan.
#pragma once

#include <string>
#include <vector>

namespace troupe {

// Writes the page (whole: a temporary file, then a rename) and returns its path. A DIR without
// metrics.jsonl (or a failed run's metrics.partial.jsonl) is troupe::Error(kUsage) naming it.
std::string write_report(const std::vector<std::string>& dirs);

}  // namespace troupe
