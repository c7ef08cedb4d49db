// Saving a checkpoint: every rank writes its pieces into one safetensors file
// inside a temporary directory (on a background thread from a host snapshot,
// or directly), the ranks agree that all writes succeeded, and rank 0 merges the per-rank indexes into manifest.json,
// renames the directory into place and updates `latest` last (see dtrain/checkpoint.h).
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "checkpoint/file_io.h"
#include "checkpoint/layout.h"
#include "checkpoint/manifest.h"
#include "checkpoint/safetensors.h"
#include "dtrain/checkpoint.h"
#include "dtrain/comm/communicator.h"
#include "dtrain/error.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace dtrain::checkpoint {

namespace layout {
std::string step_dir_name(int64_t step) {
  char b[32];
  std::snprintf(b, sizeof(b), "step-%08lld", static_cast<long long>(step));
  return b;
}
std::string rank_file_name(int rank) {
  char b[48];
  std::snprintf(b, sizeof(b), "rank-%05d.safetensors", rank);
  return b;
}
std::string rank_index_name(int rank) {
  char b[48];
  std::snprintf(b, sizeof(b), "rank-%05d.index.json", rank);
  return b;
}
int64_t parse_step_dir(const std::string& name) {
  if (name.size() < 6 || name.compare(0, 5, "step-") != 0) return -1;
  int64_t v = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || v > (int64_t{1} << 50)) return -1;
    v = v * 10 + (name[i] - '0');
  }
  return v;
}
}  // namespace layout

namespace {

// Every rank learns whether any rank failed (a collective, so a failing rank
// never leaves the others waiting at a barrier).
void agree(comm::Communicator* comm, bool failed, const std::string& message, const std::string& what) {
  float any = failed ? 1.0f : 0.0f;
  if (comm != nullptr && comm->size() > 1) {
    Tensor t = Tensor::from_vector({any}, {1});
    comm->all_reduce(t, comm::ReduceOp::max).wait();
    any = static_cast<float>(t.item(0));
  }
  if (failed) DTRAIN_THROW(message);
  if (any > 0) DTRAIN_THROW("checkpoint save failed on another rank while ", what, "; see that rank's error");
}

// This rank's file and its index (the pieces and the file's checksum).
void write_rank_file(const std::string& dir, int rank, const std::vector<Piece>& pieces, const KeyPtr& key) {
  std::vector<st::Entry> entries;
  for (const auto& p : pieces) entries.push_back({p.name, "F32", {p.end - p.begin}, 0, 0});
  const std::string header = st::build_header(entries, {{"format", "dtrain-checkpoint-shard"}});
  const std::string path = dir + "/" + layout::rank_file_name(rank);
  io::OutFile out(path, key);
  out.write(header.data(), header.size());
  for (const auto& p : pieces) {
    DTRAIN_CHECK(p.data.dtype() == DType::f32, "checkpoint: piece ", p.name, " is ", dtype_name(p.data.dtype()),
                 "; checkpoints hold f32 (master weights): train bf16/f16 through parallel::DataParallel, whose "
                 "optimizer updates f32 masters");
    const Tensor host = p.data.is_cpu() ? p.data : p.data.to(Device::cpu());
    out.write(host.data_ptr(), host.nbytes());
  }
  const uint64_t bytes = out.bytes();
  const std::string sum = out.finish();
  json index = {{"file", layout::rank_file_name(rank)}, {"bytes", bytes}, {"blake2b", sum}};
  json ps = json::array();
  for (const auto& p : pieces) ps.push_back({{"name", p.name}, {"shape", p.shape}, {"begin", p.begin}, {"end", p.end}});
  index["pieces"] = ps;
  io::write_file_atomic(dir + "/" + layout::rank_index_name(rank), index.dump(), key);
}

// Test hook: DTRAIN_CHECKPOINT_KILL_AFTER_SHARD=<rank>@<step> kills that rank
// right after its shard of that step's checkpoint is durable and before the
// checkpoint is published (a crash mid-save).
void maybe_die_mid_save(int rank, int64_t step) {
  const char* v = std::getenv("DTRAIN_CHECKPOINT_KILL_AFTER_SHARD");
  if (v == nullptr) return;
  const std::string spec = v;
  const auto at = spec.find('@');
  if (at == std::string::npos) return;
  if (std::atoi(spec.substr(0, at).c_str()) == rank && std::atoll(spec.substr(at + 1).c_str()) == step) {
    std::fprintf(stderr, "checkpoint: DTRAIN_CHECKPOINT_KILL_AFTER_SHARD: rank %d dies mid-save\n", rank);
    std::fflush(stderr);
    ::raise(SIGKILL);
  }
}

Manifest merge_indexes(const std::string& dir, int world, const Meta& meta, const KeyPtr& key) {
  Manifest m;
  m.meta = meta;
  for (int r = 0; r < world; ++r) {
    const std::string path = dir + "/" + layout::rank_index_name(r);
    const json index = json::parse(io::read_small_file(path, kMaxManifestBytes, key));
    const std::string file = index.at("file").get<std::string>();
    m.files[file] = {index.at("bytes").get<uint64_t>(), index.at("blake2b").get<std::string>()};
    for (const auto& p : index.at("pieces")) {
      auto& t = m.tensors[p.at("name").get<std::string>()];
      t.shape = p.at("shape").get<Shape>();
      t.shards.push_back({file, p.at("begin").get<int64_t>(), p.at("end").get<int64_t>()});
    }
  }
  for (auto& [name, t] : m.tensors) {
    std::sort(t.shards.begin(), t.shards.end(), [](const auto& a, const auto& b) { return a.begin < b.begin; });
  }
  // Check what a reader will check, before publishing anything.
  Manifest::parse(m.to_json(), dir + "/" + layout::kManifest);
  return m;
}

void prune(const std::string& root, int keep_last) {
  std::vector<std::pair<int64_t, fs::path>> complete;
  for (const auto& e : fs::directory_iterator(root)) {
    const int64_t step = layout::parse_step_dir(e.path().filename().string());
    if (step >= 0 && fs::exists(e.path() / layout::kManifest)) complete.emplace_back(step, e.path());
  }
  std::sort(complete.begin(), complete.end());
  for (size_t i = 0; i + static_cast<size_t>(keep_last) < complete.size(); ++i) {
    std::error_code ec;
    fs::remove_all(complete[i].second, ec);
    if (ec)
      std::fprintf(stderr, "checkpoint: warning: could not remove old checkpoint %s: %s\n", complete[i].second.c_str(),
                   ec.message().c_str());
  }
}

void publish(const std::string& root, const std::string& tmp, const std::string& final_dir, const Manifest& m,
             int world, const SaveOptions& options) {
  const std::string name = fs::path(final_dir).filename().string();
  {
    const std::string text = m.to_json();
    io::OutFile f(tmp + "/" + layout::kManifest, options.key);
    f.write(text.data(), text.size());
    f.finish();
  }
  for (int r = 0; r < world; ++r) fs::remove(tmp + "/" + layout::rank_index_name(r));
  io::fsync_dir(tmp);
  std::string old;
  if (fs::exists(final_dir)) {  // a checkpoint of the same step: replaced
    old = root + "/" + layout::kTmpPrefix + "old-" + name;
    fs::remove_all(old);
    fs::rename(final_dir, old);
  }
  fs::rename(tmp, final_dir);
  io::fsync_dir(root);
  io::write_file_atomic(root + "/" + layout::kLatest, name + "\n");
  if (!old.empty()) fs::remove_all(old);
  // Saves interrupted before this one are superseded by it: removed.
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string entry = e.path().filename().string();
    if (entry.rfind(layout::kTmpPrefix, 0) != 0) continue;
    const int64_t step = layout::parse_step_dir(entry.substr(std::string(layout::kTmpPrefix).size()));
    std::error_code ec;
    if (step >= 0 && step < m.meta.step) fs::remove_all(e.path(), ec);
  }
  if (options.keep_last > 0) prune(root, options.keep_last);
}

}  // namespace

struct PendingSave::Impl {
  std::string root, final_dir, tmp;
  Meta meta;
  std::vector<Piece> pieces;
  comm::Communicator* comm = nullptr;
  SaveOptions options;
  int rank = 0, world = 1;
  bool failed = false, done = false;
  std::string message;
  std::thread writer;
  std::string writer_error;

  template <typename Fn>
  void attempt(const Fn& fn) {
    if (failed) return;
    try {
      fn();
    } catch (const std::exception& e) {
      failed = true;
      message =
          std::string("checkpoint save to ") + final_dir + " failed on rank " + std::to_string(rank) + ": " + e.what();
    }
  }
  void write() {
    try {
      write_rank_file(tmp, rank, pieces, options.key);
      maybe_die_mid_save(rank, meta.step);
    } catch (const std::exception& e) {
      writer_error = e.what();
    }
  }
};

PendingSave::PendingSave(const std::string& root, const Meta& meta, const std::vector<Piece>& pieces,
                         comm::Communicator* comm, const SaveOptions& options, bool background)
    : impl_(std::make_unique<Impl>()) {
  Impl& d = *impl_;
  d.rank = comm != nullptr ? comm->rank() : 0;
  d.world = comm != nullptr ? comm->size() : 1;
  DTRAIN_CHECK(meta.world_size == d.world, "checkpoint::save: meta.world_size ", meta.world_size,
               " differs from the communicator's ", d.world);
  d.root = root;
  d.final_dir = root + "/" + layout::step_dir_name(meta.step);
  d.tmp = root + "/" + layout::kTmpPrefix + layout::step_dir_name(meta.step);
  d.meta = meta;
  d.comm = comm;
  d.options = options;
  if (d.rank == 0) {
    d.attempt([&] {
      fs::create_directories(root);
      fs::remove_all(d.tmp);
      fs::create_directory(d.tmp);
    });
  }
  agree(comm, d.failed, d.message, "creating the directory");
  if (!background) {  // written from the live tensors in finish()
    d.pieces = pieces;
    return;
  }
  d.pieces.reserve(pieces.size());
  for (const auto& p : pieces) {  // the snapshot: training may change the live tensors from here on
    Piece copy = p;
    copy.data = p.data.is_cpu() ? p.data.clone() : p.data.to(Device::cpu());
    d.pieces.push_back(std::move(copy));
  }
  d.writer = std::thread([&d] { d.write(); });
}

PendingSave::~PendingSave() {
  if (impl_ && impl_->writer.joinable()) impl_->writer.join();
}

bool PendingSave::finished() const {
  return impl_->done;
}

std::string PendingSave::finish() {
  Impl& d = *impl_;
  DTRAIN_CHECK(!d.done, "PendingSave::finish called twice");
  d.done = true;
  if (d.writer.joinable()) {
    d.writer.join();
  } else {
    d.write();
  }
  if (!d.writer_error.empty()) {
    d.attempt([&] { throw Error(d.writer_error); });
  }
  agree(d.comm, d.failed, d.message, "writing shards");
  if (d.rank == 0) {
    d.attempt([&] {
      publish(d.root, d.tmp, d.final_dir, merge_indexes(d.tmp, d.world, d.meta, d.options.key), d.world, d.options);
    });
  }
  agree(d.comm, d.failed, d.message, "publishing the checkpoint");
  return d.final_dir;
}

std::string save(const std::string& root, const Meta& meta, const std::vector<Piece>& pieces, comm::Communicator* comm,
                 const SaveOptions& options) {
  PendingSave pending(root, meta, pieces, comm, options, /*background=*/false);
  return pending.finish();
}

}  // namespace dtrain::checkpoint
