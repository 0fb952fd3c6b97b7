// Owns the listing of /dev/shm that the shared-memory tests take before and after a run, to show that
// every segment was cleaned up.
#pragma once

#include <dirent.h>

#include <set>
#include <string>

namespace troupe {

// The names in /dev/shm now.
inline std::set<std::string> dev_shm() {
  std::set<std::string> names;
  if (DIR* d = ::opendir("/dev/shm")) {
    while (const dirent* e = ::readdir(d)) names.insert(e->d_name);
    ::closedir(d);
  }
  return names;
}

}  // namespace troupe
