// Owns reading the job secret from a private file, with the checks that keep it private.
#include "net/tcp/secret_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "net/tcp/tcp_transport.h"
#include "runtime/error.h"

namespace troupe::net {

std::string secret_from_file(const std::string& path) {
  const std::string what = "comm.secret_file = \"" + path + "\": ";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw Error(ErrorKind::kConfig, detail::concat(what, "cannot open it (", std::strerror(errno),
                                                   "); write the job's secret there, readable by you only (chmod 600)"));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    throw Error(ErrorKind::kConfig, detail::concat(what, "cannot stat it (", std::strerror(errno), ")"));
  }
  if (!S_ISREG(st.st_mode)) throw Error(ErrorKind::kConfig, what + "is not a regular file");
  if (st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH)) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    throw Error(ErrorKind::kConfig,
                detail::concat(what, "its group or other users can read or write it (mode ", mode,
                               "), so the secret is not secret; make it private: chmod 600 ", path));
  }
  std::string secret;
  char buf[4096];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(ErrorKind::kConfig, detail::concat(what, "cannot read it (", std::strerror(errno), ")"));
    if (n == 0) break;
    secret.append(buf, static_cast<std::size_t>(n));
  }
  if (!secret.empty() && secret.back() == '\n') secret.pop_back();
  if (!secret.empty() && secret.back() == '\r') secret.pop_back();
  if (secret.empty()) {
    throw Error(ErrorKind::kConfig,
                what + "is empty; write the job's secret into it (e.g. head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > FILE)");
  }
  return secret;
}

std::string configured_secret(const std::string& secret_file) {
  return secret_file.empty() ? secret_from_environment() : secret_from_file(secret_file);
}

}  // namespace troupe::net
