// Owns expanding Slurm's compressed host lists ("node[01-04,07]") into host names.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace troupe::launcher {

// Slurm's host-list syntax, as in SLURM_STEP_NODELIST or SLURM_JOB_NODELIST: comma-separated names,
// each with any number of bracket groups of comma-separated numbers and ranges; a range keeps the
// zero padding of its lower bound (`scontrol show hostnames` prints the same list):
//   "node[01-04,07]"        -> node01 node02 node03 node04 node07
//   "a1,b[2-3]"             -> a1 b2 b3
//   "rack[1-2]-n[8-9]"      -> rack1-n8 rack1-n9 rack2-n8 rack2-n9
// Throws troupe::Error(kConfig) naming `source` (the variable) and what is wrong for an empty list,
// an unbalanced bracket, a range that runs backwards, or a bound that is not a number.
std::vector<std::string> expand_host_list(std::string_view list, std::string_view source);

}  // namespace troupe::launcher
