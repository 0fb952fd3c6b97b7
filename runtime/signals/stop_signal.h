// Owns how a training process answers SIGINT and SIGTERM: the first asks the run to stop at the next
// step boundary (the training loop polls stop_signal(), writes a checkpoint, stops its child processes
// and exits 128 + the signal: 130, 143); a second one aborts at once: it removes every partial file
// (runtime/io/partial_files.h), kills every registered child process with SIGKILL and exits 128 + the
// signal, without waiting for anything.
//
// Everything the handler touches is a fixed table read with atomics, and it calls only unlink, rmdir,
// kill and _exit: async-signal-safe, as a handler must be.
#pragma once

#include <sys/types.h>

namespace troupe {

// Installs the handlers for SIGINT and SIGTERM (SA_RESTART: system calls in progress go on).
void install_stop_handlers();
// 0 while no stop signal has arrived; else the first one's number (SIGINT, SIGTERM).
int stop_signal();

// Child processes an abort must not leave behind (replica and parameter-server processes). At most 1024
// at once; more are not registered (their parent's destructor still stops them on every other path).
void register_child_process(pid_t pid);
void unregister_child_process(pid_t pid);

}  // namespace troupe
