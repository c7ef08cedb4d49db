// libFuzzer target for the parsers of checkpoint files (bytes from disks dtrain
// does not own): the first input byte picks the parser, the rest is the file.
//   0: a whole safetensors file (length prefix, JSON header, data) via read_header
//   1: a manifest.json via Manifest::parse
// Every input must parse into something consistent (tensor byte ranges inside
// the data, sized by their shapes, not overlapping; shard ranges covering each
// tensor) or be refused with dtrain::Error. Never a crash or an over-read.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "checkpoint/manifest.h"
#include "checkpoint/safetensors.h"
#include "dtrain/error.h"

using namespace dtrain::checkpoint;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t which = data[0] % 2;
  ++data;
  --size;
  try {
    if (which == 0) {
      static const int fd = memfd_create("fuzz_safetensors", 0);
      static const std::string path = "/proc/self/fd/" + std::to_string(fd);
      if (fd < 0 || ftruncate(fd, 0) != 0) std::abort();
      if (size > 0 && pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) std::abort();
      const st::Header h = st::read_header(path);
      if (h.data_start > size) std::abort();
      uint64_t prev_end = 0;
      for (const auto& e : h.entries) {
        if (e.begin > e.end || e.end > size - h.data_start || e.begin < prev_end) std::abort();
        uint64_t numel = 1;
        for (int64_t d : e.shape) numel *= static_cast<uint64_t>(d);
        if (numel * st::dtype_bytes(e.dtype) != e.end - e.begin) std::abort();
        prev_end = e.end;
      }
    } else {
      const Manifest m = Manifest::parse(std::string(reinterpret_cast<const char*>(data), size), "fuzz.json");
      for (const auto& [name, t] : m.tensors) {
        int64_t numel = 1, covered = 0;
        for (int64_t d : t.shape) numel *= d;
        for (const auto& s : t.shards) {
          if (s.begin != covered || m.files.count(s.file) != 1) std::abort();
          covered = s.end;
        }
        if (covered != numel) std::abort();
      }
      Manifest::parse(m.to_json(), "fuzz.json");  // what it writes, it reads back
    }
  } catch (const dtrain::Error&) {
    // Refused with a message: what a bad file must do.
  }
  return 0;
}
