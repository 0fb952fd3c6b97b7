// Owns how a process learns its place in a job that a launcher started (torchrun, Slurm, mpirun, or explicit settings): one pure function from the environment to a JoinSpec.
//
// Precedence, highest first; the first source that names both a rank and a world size wins, and the
// ones below it are not read (torchrun inside a Slurm allocation: RANK is the process, SLURM_PROCID
// the torchrun agent):
//   1. explicit settings   comm.rank, comm.world_size (config file or --set)
//   2. torchrun            RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE
//   3. Slurm (srun)        SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID
//   4. OpenMPI (mpirun)    OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK,
//                          OMPI_COMM_WORLD_LOCAL_SIZE
// A source that names only one of the two (RANK without WORLD_SIZE) above the winner is an error,
// not skipped: it means the launch is not what the user thinks.
// Where rank 0 listens, HOST:PORT, highest first: comm.address when set explicitly; MASTER_ADDR
// (torchrun, or set by hand for mpirun: `mpirun -x MASTER_ADDR=...`); the first host of
// SLURM_STEP_NODELIST (else SLURM_JOB_NODELIST), expanded (host_list.h). The port: comm.address's
// when set explicitly, else MASTER_PORT, else the default port. OpenMPI says nothing about where
// rank 0 is, so a job under mpirun needs MASTER_ADDR or comm.address.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace troupe::launcher {

enum class JoinSource { settings, torchrun, slurm, openmpi };
std::string_view join_source_name(JoinSource source);  // "comm.rank/comm.world_size", "torchrun", "Slurm", "OpenMPI"

struct JoinSpec {
  JoinSource source = JoinSource::settings;
  int rank = 0;
  int world_size = 1;
  int local_rank = -1;        // among the job's processes on this host; -1: the launcher did not say
  int local_world_size = -1;  // the job's processes on this host; -1: not said
  std::string address;        // rank 0's HOST:PORT (HOST a name or an IPv4 address)
  std::string address_from;   // the settings or variables it came from, for messages ("MASTER_ADDR, MASTER_PORT")
  friend bool operator==(const JoinSpec&, const JoinSpec&) = default;
};

// What the configuration says explicitly (keys left at their defaults are nullopt).
struct JoinSettings {
  std::optional<int> rank;              // comm.rank
  std::optional<int> world_size;        // comm.world_size
  std::optional<std::string> address;   // comm.address, HOST:PORT
  int default_port = 29500;             // the port when nothing names one
};

using Environment = std::map<std::string, std::string, std::less<>>;

// The job this process joins, or nullopt when neither the settings nor any launcher's variables name
// a rank (a single-process run, or one whose ranks troupe starts itself, as before). Throws
// troupe::Error(kConfig) naming the variables and what to do for: a rank or size that is not a whole
// number, a rank outside [0, world size), a local rank outside its local size, a source that names
// only one of rank and size, a malformed Slurm host list or MASTER_PORT, and a job of several
// processes that nothing tells where rank 0 listens.
std::optional<JoinSpec> resolve_join(const JoinSettings& settings, const Environment& environment);

// The process's environment (environ) as an Environment.
Environment process_environment();

}  // namespace troupe::launcher
