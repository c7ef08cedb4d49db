#include "dtrain/data/data_loader.h"

#include <algorithm>

namespace dtrain::data {

DataLoader::DataLoader(std::vector<std::shared_ptr<TokenSource>> sources, int64_t global_batch, int64_t seq_len,
                       int64_t rank, int64_t world_size)
    : sources_(std::move(sources)),
      global_batch_(global_batch),
      seq_len_(seq_len),
      rank_(rank),
      world_size_(world_size) {
  DTRAIN_CHECK(!sources_.empty(), "DataLoader: no data was given (empty list of token sources)");
  DTRAIN_CHECK(global_batch > 0 && seq_len > 0, "DataLoader: batch ", global_batch, " and sequence length ", seq_len,
               " must be positive");
  DTRAIN_CHECK(world_size > 0 && rank >= 0 && rank < world_size, "DataLoader: rank ", rank,
               " is outside a world of size ", world_size);
  DTRAIN_CHECK(global_batch % world_size == 0, "DataLoader: the global batch ", global_batch,
               " does not split evenly over ", world_size, " ranks; use a multiple of the world size");
  for (auto& s : sources_) {
    DTRAIN_CHECK(s != nullptr, "DataLoader: a token source is null");
    DTRAIN_CHECK(s->size() >= window(), "DataLoader: ", s->describe(), " has ", s->size(),
                 " tokens, fewer than one global batch needs (", global_batch, " x ", seq_len, " + 1 = ", window(),
                 "); use more data or a smaller --batch/--seq-len");
  }
  const int64_t b = local_batch();
  batch_.inputs = Tensor::empty({b, seq_len}, DType::i32);
  batch_.targets = Tensor::empty({b, seq_len}, DType::i32);
  buf_.resize(static_cast<size_t>(b * seq_len + 1));
}

DataLoader DataLoader::from_pattern(const std::string& pattern, int64_t global_batch, int64_t seq_len, int64_t rank,
                                    int64_t world_size) {
  std::vector<std::shared_ptr<TokenSource>> sources;
  for (auto& p : glob_paths(pattern)) sources.push_back(std::make_shared<ShardFile>(p));
  return DataLoader(std::move(sources), global_batch, seq_len, rank, world_size);
}

const Batch& DataLoader::next() {
  if (pos_.offset + window() > sources_[pos_.shard]->size()) {
    pos_.offset = 0;
    if (++pos_.shard == static_cast<int64_t>(sources_.size())) {
      pos_.shard = 0;
      ++pos_.epoch;
    }
  }
  const int64_t b = local_batch();
  // This rank's rows, plus the one token its last target needs.
  const int64_t start = pos_.offset + rank_ * b * seq_len_;
  sources_[pos_.shard]->read(start, b * seq_len_ + 1, buf_.data());
  int32_t* in = batch_.inputs.data<int32_t>();
  int32_t* tg = batch_.targets.data<int32_t>();
  for (int64_t i = 0; i < b * seq_len_; ++i) {
    in[i] = buf_[i];
    tg[i] = buf_[i + 1];
    max_token_ = std::max<int64_t>(max_token_, buf_[i + 1]);
  }
  pos_.offset += global_batch_ * seq_len_;
  return batch_;
}

void DataLoader::set_position(const LoaderPosition& pos) {
  DTRAIN_CHECK(pos.epoch >= 0 && pos.shard >= 0 && pos.shard < static_cast<int64_t>(sources_.size()) &&
                   pos.offset >= 0 && pos.offset <= sources_[pos.shard]->size(),
               "DataLoader: position (epoch ", pos.epoch, ", shard ", pos.shard, ", offset ", pos.offset,
               ") does not exist in these ", sources_.size(), " sources; was it saved with other data?");
  pos_ = pos;
}

int64_t DataLoader::batches_per_epoch() const {
  int64_t n = 0;
  for (auto& s : sources_) n += 1 + (s->size() - window()) / (global_batch_ * seq_len_);
  return n;
}

int64_t DataLoader::vocab_bound() const {
  return max_token_ + 1;
}

}  // namespace dtrain::data
