// The job secret, consecutive rendezvous addresses, and listeners published through the environment.
#include "net/tcp/launch.h"

#include <cstdlib>

#include "runtime/error.h"
#include "runtime/launch/host_port.h"
#include "runtime/process/replica_processes.h"
#include "runtime/strings.h"

namespace troupe::net {

std::string job_secret() {
  if (const char* env = std::getenv("TROUPE_SECRET"); env && *env) return env;
  return random_secret();
}

std::vector<std::string> consecutive_addresses(const std::string& setting, const std::string& address, int count,
                                               const std::string& what) {
  const launcher::HostPort first = launcher::parse_host_port(setting, address, "127.0.0.1:29500");
  const std::string& host = first.host;
  const int port = first.port;
  if (port + count - 1 > 65535)
    throw Error(ErrorKind::kConfig, setting + " = \"" + address + "\": ports " + std::to_string(port) + ".." +
                                        std::to_string(port + count - 1) + " (one per " + what + ") must lie in 0..65535");
  std::vector<std::string> out;
  for (int i = 0; i < count; ++i) out.push_back(host + ":" + std::to_string(port ? port + i : 0));
  return out;
}

std::vector<TcpListener> bind_listeners(const std::vector<std::string>& addresses, const char* env, std::string& bound) {
  std::vector<TcpListener> listeners;
  for (const std::string& address : addresses) {
    listeners.emplace_back(address);
    bound += (bound.empty() ? "" : ",") + listeners.back().address();
  }
  setenv(env, bound.c_str(), 1);
  return listeners;
}

std::vector<std::string> addresses_from_environment(const char* env) {
  const char* value = std::getenv(env);
  if (!value) throw Error(ErrorKind::kUsage, std::string("--rank is for processes troupe starts itself (") + env + " is not set)");
  return split(value);
}

}  // namespace troupe::net
