// resolve_join: the launchers' variables in order of precedence, each checked, and rank 0's address from the first place that names it.
#include "runtime/launch/join_spec.h"

#include <charconv>
#include <utility>
#include <vector>

#include "runtime/error.h"
#include "runtime/launch/host_list.h"
#include "runtime/launch/host_port.h"

extern char** environ;

namespace troupe::launcher {

std::string_view join_source_name(JoinSource source) {
  switch (source) {
    case JoinSource::settings: return "comm.rank/comm.world_size";
    case JoinSource::torchrun: return "torchrun";
    case JoinSource::slurm: return "Slurm";
    case JoinSource::openmpi: return "OpenMPI";
  }
  return "?";
}

namespace {

[[noreturn]] void refuse(const std::string& what) { throw Error(ErrorKind::kConfig, what); }

// The variables one launcher sets; local ones may be empty (not set by that launcher).
struct SourceVariables {
  JoinSource source;
  const char* rank;
  const char* size;
  const char* local_rank;
  const char* local_size;
};

constexpr SourceVariables kLaunchers[] = {
    {JoinSource::torchrun, "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"},
    {JoinSource::slurm, "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", ""},
    {JoinSource::openmpi, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
     "OMPI_COMM_WORLD_LOCAL_SIZE"},
};

const std::string* lookup(const Environment& env, std::string_view name) {
  if (name.empty()) return nullptr;
  const auto it = env.find(name);
  return it == env.end() ? nullptr : &it->second;
}

// A whole number >= `min` from variable `name`.
int whole_number(std::string_view name, const std::string& text, int min, std::string_view meaning) {
  int v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || v < min)
    refuse(detail::concat(name, " = \"", text, "\" is not ", meaning, " (a whole number >= ", min, ")"));
  return v;
}

void check_rank(int rank, int size, std::string_view rank_name, std::string_view size_name) {
  if (rank >= size)
    refuse(detail::concat(rank_name, " = ", rank, " is not below ", size_name, " = ", size,
                          ": ranks run from 0 to the world size - 1"));
}

// Rank 0's HOST:PORT for `spec`, or "" for a one-process job that needs none.
void resolve_address(const JoinSettings& settings, const Environment& env, JoinSpec& spec) {
  std::string host, port, host_from, port_from;
  if (settings.address) {
    HostPort given = parse_host_port("comm.address", *settings.address, "node01:29500");
    host = std::move(given.host);
    port = std::to_string(given.port);
    host_from = port_from = "comm.address";
  }
  if (host.empty()) {
    if (const std::string* master = lookup(env, "MASTER_ADDR"); master && !master->empty()) {
      host = *master;
      host_from = "MASTER_ADDR";
    }
  }
  if (host.empty()) {
    for (const char* name : {"SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST"}) {
      if (const std::string* list = lookup(env, name); list && !list->empty()) {
        host = expand_host_list(*list, name).front();
        host_from = detail::concat("the first host of ", name);
        break;
      }
    }
  }
  if (port.empty()) {
    if (const std::string* master_port = lookup(env, "MASTER_PORT"); master_port && !master_port->empty()) {
      port = std::to_string(whole_number("MASTER_PORT", *master_port, 1, "a port"));
      if (std::stoi(port) > 65535) refuse(detail::concat("MASTER_PORT = ", *master_port, " is above 65535"));
      port_from = "MASTER_PORT";
    } else {
      port = std::to_string(settings.default_port);
      port_from = "the default port";
    }
  }
  if (host.empty()) {
    if (spec.world_size == 1) return;
    refuse(detail::concat(join_source_name(spec.source), " makes this process rank ", spec.rank, " of ",
                          spec.world_size, ", but nothing says where rank 0 listens: set MASTER_ADDR (and MASTER_PORT; "
                          "with mpirun: mpirun -x MASTER_ADDR=HOST -x MASTER_PORT=PORT) or --set comm.address=HOST:PORT"));
  }
  spec.address = host + ":" + port;
  spec.address_from = host_from == port_from ? host_from : host_from + ", " + port_from;
}

}  // namespace

std::optional<JoinSpec> resolve_join(const JoinSettings& settings, const Environment& env) {
  std::optional<JoinSpec> spec;
  if (settings.rank || settings.world_size) {
    if (!settings.world_size)
      refuse(detail::concat("comm.rank = ", *settings.rank, " is set but comm.world_size is not: set both, or "
                            "neither to take them from the launcher (torchrun, Slurm, mpirun)"));
    if (!settings.rank && *settings.world_size > 1)
      refuse(detail::concat("comm.world_size = ", *settings.world_size, " is set but comm.rank is not: set both, or "
                            "neither to take them from the launcher (torchrun, Slurm, mpirun)"));
    spec = JoinSpec{.source = JoinSource::settings, .rank = settings.rank.value_or(0), .world_size = *settings.world_size};
    if (spec->world_size < 1) refuse(detail::concat("comm.world_size = ", spec->world_size, " must be >= 1"));
    if (spec->rank < 0) refuse(detail::concat("comm.rank = ", spec->rank, " must be >= 0"));
    check_rank(spec->rank, spec->world_size, "comm.rank", "comm.world_size");
  }
  for (const SourceVariables& v : kLaunchers) {
    if (spec) break;
    const std::string* rank = lookup(env, v.rank);
    const std::string* size = lookup(env, v.size);
    if (!rank && !size) continue;
    if (!rank || !size)
      refuse(detail::concat(rank ? v.rank : v.size, " is set but ", rank ? v.size : v.rank, " is not: ",
                            join_source_name(v.source), " sets both; set both, or unset the one that is left over"));
    JoinSpec s{.source = v.source};
    s.rank = whole_number(v.rank, *rank, 0, "a rank");
    s.world_size = whole_number(v.size, *size, 1, "a world size");
    check_rank(s.rank, s.world_size, v.rank, v.size);
    if (const std::string* local = lookup(env, v.local_rank)) s.local_rank = whole_number(v.local_rank, *local, 0, "a local rank");
    if (const std::string* local = lookup(env, v.local_size))
      s.local_world_size = whole_number(v.local_size, *local, 1, "a local world size");
    if (s.local_rank >= 0 && s.local_world_size > 0) check_rank(s.local_rank, s.local_world_size, v.local_rank, v.local_size);
    if (s.local_world_size > s.world_size)
      refuse(detail::concat(v.local_size, " = ", s.local_world_size, " is above ", v.size, " = ", s.world_size));
    spec = s;
  }
  if (!spec) return std::nullopt;
  resolve_address(settings, env, *spec);
  return spec;
}

Environment process_environment() {
  Environment env;
  for (char** e = environ; e && *e; ++e) {
    const std::string_view entry = *e;
    const auto eq = entry.find('=');
    if (eq != std::string_view::npos) env.emplace(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
  }
  return env;
}

}  // namespace troupe::launcher
