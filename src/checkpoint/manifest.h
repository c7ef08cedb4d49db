// manifest.json of a checkpoint: the job's Meta, every tensor's global shape,
// dtype and the element ranges each file holds, and each file's size and
// BLAKE2b checksum. parse() treats the text as hostile: every field checked,
// file names confined to the checkpoint directory, every tensor's ranges
// covering it exactly once, every named file listed with its checksum.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "dtrain/checkpoint.h"

namespace dtrain::checkpoint {

constexpr uint64_t kMaxManifestBytes = 256ull << 20;

struct Manifest {
  struct Shard {
    std::string file;
    int64_t begin = 0, end = 0;  // element range of the flattened tensor
  };
  struct TensorInfo {
    Shape shape;
    std::string dtype = "F32";
    std::vector<Shard> shards;  // sorted by begin, covering [0, numel)
  };
  struct FileInfo {
    uint64_t bytes = 0;
    std::string blake2b;
  };
  Meta meta;
  std::map<std::string, TensorInfo> tensors;
  std::map<std::string, FileInfo> files;

  std::string to_json() const;
  // `where` names the manifest in messages.
  static Manifest parse(const std::string& text, const std::string& where);
};

}  // namespace dtrain::checkpoint
