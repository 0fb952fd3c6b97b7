// Owns the parent watch: a rank process that troupe started ends promptly when the process that
// started it (its rank 0) dies, however it dies — even while the rank is still in the rendezvous.
//
// How: rank 0 keeps the write end of a pipe per child (ReplicaProcesses); the child holds the read end
// as descriptor kParentWatchFd, named by TROUPE_PARENT_FD in its environment. When rank 0 exits or is
// killed, the kernel closes the write end and the child's blocked read returns: the child says so on
// stderr and exits (status 1) at once. Without it an orphan waits out comm.timeout_s in a rendezvous
// or a collective. (A pipe rather than PR_SET_PDEATHSIG, which fires when the *thread* that forked the
// child ends — restarts are forked from link-server threads that come and go.)
#pragma once

#include <string>

namespace troupe {

// The descriptor number a child's read end is moved to (high, so it does not collide with the
// descriptors a fresh process opens first).
inline constexpr int kParentWatchFd = 200;
inline constexpr const char* kParentWatchEnv = "TROUPE_PARENT_FD";

// In a process started with TROUPE_PARENT_FD: starts the watch (a detached thread blocked in read(2):
// blocking I/O is what it is for). `who` names this process in the message ("data-parallel rank 2").
// Without the variable: does nothing.
void watch_parent_from_environment(const std::string& who);

}  // namespace troupe
