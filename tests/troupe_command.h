// Owns run_troupe: the `troupe` program run as a user runs it — a shell command line — with its exit code, stdout and stderr.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

struct TroupeRun {
  int code = -1;  // exit status; -1 when killed by a signal
  std::string out, err;
};

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs `env troupe args` (env: "NAME=value ..." or empty) with stdin from /dev/null; its output is
// captured through two files in `scratch`, removed afterwards.
inline TroupeRun run_troupe(const std::filesystem::path& scratch, const std::string& args, const std::string& env = "") {
  const auto out = scratch / "stdout.txt", err = scratch / "stderr.txt";
  const std::string cmd = env + " " + std::string(TROUPE_BINARY) + " " + args + " > " + out.string() + " 2> " +
                          err.string() + " < /dev/null";
  const int status = std::system(cmd.c_str());
  TroupeRun r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  std::filesystem::remove(out);
  std::filesystem::remove(err);
  return r;
}
