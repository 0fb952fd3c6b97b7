// Owns where a rank's job secret comes from: the file comm.secret_file names, else the environment variable TROUPE_SECRET.
//
// Precedence: comm.secret_file, when set, wins over TROUPE_SECRET (an explicit setting beats the
// environment, as for the launcher's variables in docs/multi-host.md). Neither source is ever a
// command line: a file's contents and an environment variable are not in /proc/PID/cmdline, which
// every user of the host can read. The file must be a regular file that its group and others can
// neither read nor write (chmod 600), and not empty; one trailing newline ("\n" or "\r\n") is not
// part of the secret, so `echo SECRET > file` works.
#pragma once

#include <string>

namespace troupe::net {

// The secret in the file at `path`; troupe::Error (kConfig) naming the file and what to do when it
// is missing, unreadable, not a regular file, readable or writable by group or others, or empty.
std::string secret_from_file(const std::string& path);

// secret_from_file(secret_file) when `secret_file` is not empty, else secret_from_environment().
std::string configured_secret(const std::string& secret_file);

}  // namespace troupe::net
