// DataLoader: serves (B, T) batches of inputs and next-token targets from a
// list of token sources (shard files or memory), for one rank of a
// data-parallel job.
//
// Every global batch is one contiguous window of B*T + 1 tokens of the current
// shard: row r is tokens [r*T, r*T + T) and its targets are shifted by one.
// Rank k of W gets rows [k*B/W, (k+1)*B/W), so the ranks' shares partition the
// global batch and all ranks advance together. When the window would run past
// the end of a shard the loader moves to the next shard (after the last, back
// to the first and epoch + 1). position()/set_position() save and restore the
// exact place, so a resumed job sees the same batches as an uninterrupted one.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dtrain/data/token_shard.h"
#include "dtrain/tensor.h"

namespace dtrain::data {

struct LoaderPosition {
  int64_t epoch = 0;
  int64_t shard = 0;   // index into the source list
  int64_t offset = 0;  // token offset of the next global batch inside the shard
  bool operator==(const LoaderPosition& o) const { return epoch == o.epoch && shard == o.shard && offset == o.offset; }
};

struct Batch {
  Tensor inputs;   // [B/W, T] i32 on the CPU
  Tensor targets;  // [B/W, T] i32 on the CPU
};

class DataLoader {
 public:
  DataLoader(std::vector<std::shared_ptr<TokenSource>> sources, int64_t global_batch, int64_t seq_len, int64_t rank = 0,
             int64_t world_size = 1);
  // Shard files matching a glob pattern (sorted).
  static DataLoader from_pattern(const std::string& pattern, int64_t global_batch, int64_t seq_len, int64_t rank = 0,
                                 int64_t world_size = 1);

  // The next batch (this rank's share). The returned tensors are reused by the
  // following call: copy them if they must outlive it.
  const Batch& next();

  LoaderPosition position() const { return pos_; }
  // Throws if the position does not exist in these sources.
  void set_position(const LoaderPosition& pos);
  // Global batches per pass over all sources.
  int64_t batches_per_epoch() const;

  int64_t global_batch() const { return global_batch_; }
  int64_t local_batch() const { return global_batch_ / world_size_; }
  int64_t seq_len() const { return seq_len_; }
  int64_t rank() const { return rank_; }
  int64_t world_size() const { return world_size_; }
  int64_t vocab_bound() const;  // 1 + the largest token id seen so far (diagnostics)

 private:
  int64_t window() const { return global_batch_ * seq_len_ + 1; }

  std::vector<std::shared_ptr<TokenSource>> sources_;
  int64_t global_batch_, seq_len_, rank_, world_size_;
  LoaderPosition pos_;
  Batch batch_;
  std::vector<uint16_t> buf_;
  int64_t max_token_ = -1;
};

}  // namespace dtrain::data
