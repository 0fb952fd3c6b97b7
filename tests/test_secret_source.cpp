// Owns the tests of where the job secret comes from (comm.secret_file, TROUPE_SECRET) and of how rank 0 hands it to the ranks it starts: never in their arguments.
#include <catch2/catch.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "net/tcp/secret_source.h"
#include "runtime/error.h"
#include "runtime/process/replica_processes.h"
#include "temp_dir.h"

using namespace troupe;
using Catch::Matchers::Contains;
using namespace std::chrono_literals;

namespace {

std::string private_file(const TempDir& dir, const std::string& name, const std::string& text, mode_t mode = 0600) {
  const std::string path = dir.write(name, text);
  REQUIRE(::chmod(path.c_str(), mode) == 0);
  return path;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("comm.secret_file: a private file's contents, one trailing newline dropped", "[tcp][secret]") {
  TempDir dir;
  CHECK(net::secret_from_file(private_file(dir, "a", "s3cret\n")) == "s3cret");
  CHECK(net::secret_from_file(private_file(dir, "b", "s3cret\r\n")) == "s3cret");
  CHECK(net::secret_from_file(private_file(dir, "c", "two words\n\n")) == "two words\n");
  CHECK(net::secret_from_file(private_file(dir, "d", "owner-only", 0400)) == "owner-only");
}

TEST_CASE("comm.secret_file: refused when others can read or write it, when empty or missing, precisely", "[tcp][secret]") {
  TempDir dir;
  const std::string group_readable = private_file(dir, "g", "x", 0640);
  CHECK_THROWS_WITH(net::secret_from_file(group_readable),
                    Contains("comm.secret_file = \"" + group_readable + "\": its group or other users can read or write it (mode 0640)") &&
                        Contains("chmod 600 " + group_readable));
  CHECK_THROWS_WITH(net::secret_from_file(private_file(dir, "o", "x", 0604)), Contains("(mode 0604)"));
  CHECK_THROWS_WITH(net::secret_from_file(private_file(dir, "w", "x", 0620)), Contains("(mode 0620)"));
  const std::string empty = private_file(dir, "e", "");
  CHECK_THROWS_WITH(net::secret_from_file(empty), Contains("comm.secret_file = \"" + empty + "\": is empty"));
  CHECK_THROWS_WITH(net::secret_from_file(private_file(dir, "n", "\n")), Contains("is empty"));
  CHECK_THROWS_WITH(net::secret_from_file(dir.file("missing")), Contains("cannot open it (No such file or directory)"));
  CHECK_THROWS_WITH(net::secret_from_file(dir.path.string()), Contains("is not a regular file"));
}

TEST_CASE("comm.secret_file wins over TROUPE_SECRET, and without it TROUPE_SECRET is read", "[tcp][secret]") {
  TempDir dir;
  const char* before = std::getenv("TROUPE_SECRET");
  const std::string saved = before ? before : "";
  ::setenv("TROUPE_SECRET", "from-env", 1);
  CHECK(net::configured_secret(private_file(dir, "s", "from-file\n")) == "from-file");
  CHECK(net::configured_secret("") == "from-env");
  ::unsetenv("TROUPE_SECRET");
  CHECK_THROWS_WITH(net::configured_secret(""), Contains("TROUPE_SECRET is not set"));
  if (before) ::setenv("TROUPE_SECRET", saved.c_str(), 1);
}

TEST_CASE("a started rank has the secret in its environment, never in its arguments (/proc/PID/cmdline)", "[tcp][secret]") {
  const std::string secret = "the-job-secret-4f1c";
  // sh stays alive (the sleep is not its last command), with the arguments ranks get: args + --rank r.
  ReplicaProcesses ranks("/bin/sh", {"-c", "sleep 5; :", "rank"}, 2, secret);
  pid_t child = 0;
  for (int attempt = 0; attempt < 200 && !child; ++attempt) {
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
      const std::string name = entry.path().filename().string();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      const std::string stat = slurp(entry.path() / "stat");
      const auto close = stat.rfind(')');
      if (close == std::string::npos) continue;
      std::istringstream rest(stat.substr(close + 2));
      char state;
      pid_t ppid = 0;
      rest >> state >> ppid;
      if (ppid == ::getpid() && slurp(entry.path() / "cmdline").find("--rank") != std::string::npos) child = std::stoi(name);
    }
    if (!child) std::this_thread::sleep_for(10ms);
  }
  REQUIRE(child != 0);
  const std::string cmdline = slurp("/proc/" + std::to_string(child) + "/cmdline");
  const std::string environ = slurp("/proc/" + std::to_string(child) + "/environ");
  CHECK_THAT(cmdline, Contains("--rank"));
  CHECK(cmdline.find(secret) == std::string::npos);
  CHECK(environ.find("TROUPE_SECRET=" + secret) != std::string::npos);
  ranks.kill_all();
}
