// The kernel's own CPU cost of a one-way loopback TCP stream, the floor under troupe's TCP transport: a sender
// process writes TOTAL MiB in 1 MiB messages (cycling through a SOURCE-MiB buffer) to a receiver process, with
// send() (the kernel copies each byte into its buffers, then out again) or with vmsplice()+splice() (the kernel
// references the sender's pages and the receiver copies from them once). Prints each side's CPU seconds.
//
// Build and run: cc -O2 bench/loopback_stream.c -o loopback_stream && ./loopback_stream send 1024 64
// (docs/transports.md, "TCP against gloo", quotes what it measured and why splice does not pay here.)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const size_t kMessage = 1 << 20;

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void fail(const char* what) {
  fprintf(stderr, "loopback_stream: %s failed: %s\n", what, strerror(errno));
  exit(1);
}

static void receive(struct sockaddr_in at, long total, const char* mode) {
  const int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0 || connect(s, (struct sockaddr*)&at, sizeof at) != 0) fail("the receiver's connect");
  char* buffer = aligned_alloc(4096, kMessage);
  memset(buffer, 1, kMessage);
  for (long got = 0; got < total;) {
    const ssize_t n = recv(s, buffer, kMessage, 0);
    if (n < 0) fail("recv");
    if (n == 0) break;
    got += n;
  }
  printf("receiver (%s): %.3f s CPU\n", mode, cpu_seconds());
}

int main(int argc, char** argv) {
  const int splicing = argc == 4 && strcmp(argv[1], "splice") == 0;
  if (argc != 4 || (!splicing && strcmp(argv[1], "send") != 0) || atol(argv[2]) < 1 || atol(argv[3]) < 1) {
    fprintf(stderr, "usage: loopback_stream send|splice TOTAL_MIB SOURCE_MIB   (e.g. send 1024 64)\n");
    return 2;
  }
  const long total = atol(argv[2]) << 20, sources = atol(argv[3]);
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in at = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t length = sizeof at;
  if (bind(listener, (struct sockaddr*)&at, sizeof at) != 0 || listen(listener, 1) != 0 ||
      getsockname(listener, (struct sockaddr*)&at, &length) != 0)
    fail("listening on 127.0.0.1");
  fflush(stdout);
  const pid_t child = fork();
  if (child < 0) fail("fork");
  if (child == 0) {
    receive(at, total, argv[1]);
    return 0;
  }
  const int s = accept(listener, NULL, NULL);
  const int on = 1;
  if (s < 0 || setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) != 0) fail("accept");
  char* source = aligned_alloc(4096, kMessage * sources);
  memset(source, 2, kMessage * sources);
  int pipe_ends[2];
  if (splicing && (pipe(pipe_ends) != 0 || fcntl(pipe_ends[1], F_SETPIPE_SZ, (int)kMessage) < 0)) fail("a 1 MiB pipe");
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long sent = 0, i = 0; sent < total; sent += kMessage, ++i) {
    const char* from = source + (i % sources) * kMessage;
    for (size_t done = 0; done < kMessage;) {
      if (!splicing) {
        const ssize_t n = send(s, from + done, kMessage - done, 0);
        if (n <= 0) fail("send");
        done += (size_t)n;
        continue;
      }
      struct iovec piece = {(void*)(from + done), kMessage - done};
      const ssize_t n = vmsplice(pipe_ends[1], &piece, 1, 0);
      if (n <= 0) fail("vmsplice");
      for (ssize_t moved = 0; moved < n;) {
        const ssize_t k = splice(pipe_ends[0], NULL, s, NULL, (size_t)(n - moved), SPLICE_F_MOVE);
        if (k <= 0) fail("splice");
        moved += k;
      }
      done += (size_t)n;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("sender (%s): %.3f s CPU, %.3f s wall for %ld MiB\n", argv[1], cpu_seconds(),
         (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, total >> 20);
  fflush(stdout);
  shutdown(s, SHUT_WR);
  int status = 0;
  waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
