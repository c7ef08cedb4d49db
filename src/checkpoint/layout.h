// Names inside a checkpoint root shared by saving and loading.
#pragma once

#include <cstdint>
#include <string>

namespace dtrain::checkpoint::layout {

inline constexpr const char* kManifest = "manifest.json";
inline constexpr const char* kLatest = "latest";
inline constexpr const char* kTmpPrefix = ".tmp-";

std::string step_dir_name(int64_t step);  // "step-00000020"
std::string rank_file_name(int rank);     // "rank-00000.safetensors"
std::string rank_index_name(int rank);    // "rank-00000.index.json" (removed once merged)
// The step of a "step-NNNNNNNN" name, or -1.
int64_t parse_step_dir(const std::string& name);

}  // namespace dtrain::checkpoint::layout
