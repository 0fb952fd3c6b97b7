// RunDir: creating the directory, the log, the metrics files and their renaming at the end.
#include "cli/run_dir.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "runtime/error.h"

namespace troupe {

namespace fs = std::filesystem;

namespace {
std::FILE* open_or_throw(const std::string& path, const std::string& option) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (!f) throw Error(ErrorKind::kUsage, option + ": cannot write " + path + ": " + std::strerror(errno));
  return f;
}
}  // namespace

RunDir::RunDir(const std::string& dir, const std::string& option) : dir_(dir) {
  std::error_code ec;
  if (fs::exists(dir_, ec)) {
    if (!fs::is_directory(dir_, ec)) throw Error(ErrorKind::kUsage, option + " " + dir_ + ": exists and is not a directory");
    if (!fs::is_empty(dir_, ec))
      throw Error(ErrorKind::kUsage, option + " " + dir_ + ": directory is not empty (give a new or empty one)");
  } else if (!fs::create_directories(dir_, ec) || ec) {
    throw Error(ErrorKind::kUsage, option + " " + dir_ + ": cannot create the directory: " + ec.message());
  }
  if (::access(dir_.c_str(), W_OK) != 0)
    throw Error(ErrorKind::kUsage, option + " " + dir_ + ": cannot write there: " + std::strerror(errno));
  log_ = open_or_throw(path("log.txt"), option);
  jsonl_ = open_or_throw(path("metrics.partial.jsonl"), option);
  csv_ = open_or_throw(path("metrics.partial.csv"), option);
}

RunDir::~RunDir() {
  for (std::FILE* f : {log_, jsonl_, csv_})
    if (f) std::fclose(f);
}

std::string RunDir::fresh_path(const std::string& parent, const std::string& model) {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm local{};
  localtime_r(&now, &local);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &local);
  const std::string base = (fs::path(parent) / (std::string(stamp) + "-" + model)).string();
  std::string candidate = base;
  for (int n = 2; fs::exists(candidate); ++n) candidate = base + "-" + std::to_string(n);
  return candidate;
}

std::string RunDir::path(const std::string& name) const { return (fs::path(dir_) / name).string(); }

void RunDir::write_file(const std::string& name, const std::string& contents) const {
  const std::string target = path(name), tmp = target + ".partial";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << contents;
    out.flush();
    if (!out) throw Error(ErrorKind::kIo, "cannot write " + tmp + " (disk full?)");
  }
  fs::rename(tmp, target);
}

void RunDir::add_metrics(const MetricsRow& row, const std::string& unit) {
  if (std::ftell(csv_) == 0) std::fprintf(csv_, "%s\n", csv_header(row, unit).c_str());
  std::fprintf(jsonl_, "%s\n", to_json_line(row, unit).c_str());
  std::fprintf(csv_, "%s\n", csv_line(row).c_str());
  std::fflush(jsonl_);
  std::fflush(csv_);
}

void RunDir::finish() {
  for (std::FILE** f : {&jsonl_, &csv_}) {
    if (std::fclose(*f) != 0) throw Error(ErrorKind::kIo, "cannot write the metrics in " + dir_ + " (disk full?)");
    *f = nullptr;
  }
  fs::rename(path("metrics.partial.jsonl"), path("metrics.jsonl"));
  fs::rename(path("metrics.partial.csv"), path("metrics.csv"));
  std::fflush(log_);
}

void RunDir::fail(const std::string& error) {
  std::fprintf(log_, "troupe: error: %s\n", error.c_str());
  std::fflush(log_);
  std::ofstream(path("FAILED.txt")) << "troupe: error: " << error
                                    << "\nThe metrics so far are in metrics.partial.jsonl and metrics.partial.csv; "
                                       "the log in log.txt.\n";
}

void print_and_log(const RunDir* run, const std::string& text) {
  std::fputs(text.c_str(), stdout);
  std::fflush(stdout);
  if (run) {
    std::fputs(text.c_str(), run->log());
    std::fflush(run->log());
  }
}

}  // namespace troupe
