// libFuzzer target for the token-shard reader: any file must either open
// (and then every in-range window reads the bytes the file holds, and every
// out-of-range one throws) or be refused with dtrain::Error. Never a crash,
// an over-read or a size that disagrees with the file.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "dtrain/data/token_shard.h"
#include "dtrain/error.h"

using namespace dtrain::data;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // One in-memory file, rewritten per input and opened by path like a shard.
  static const int fd = memfd_create("fuzz_shard", 0);
  static const std::string path = "/proc/self/fd/" + std::to_string(fd);
  if (fd < 0 || ftruncate(fd, 0) != 0) std::abort();
  if (size > 0 && pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) std::abort();
  try {
    ShardFile shard(path);
    const int64_t n = shard.size();
    if (n < 0 || static_cast<size_t>(kShardHeaderBytes + 2 * n) != size) std::abort();
    std::vector<uint16_t> all(static_cast<size_t>(n));
    if (n > 0) shard.read(0, n, all.data());
    if (n > 0 && std::memcmp(all.data(), data + kShardHeaderBytes, static_cast<size_t>(2 * n)) != 0) std::abort();
    if (read_token_shard(path) != all) std::abort();
    uint16_t one = 0;
    bool threw = false;
    try {
      shard.read(n, 1, &one);  // one past the end
    } catch (const dtrain::Error&) {
      threw = true;
    }
    if (!threw) std::abort();
  } catch (const dtrain::Error&) {
    // Refused with a message: what a bad file must do.
  }
  return 0;
}
