// Reading a checkpoint: the manifest checked, each needed file checked for
// size and checksum before its first use, then only the byte ranges that
// overlap the requested elements read. find_latest() picks the newest
// complete checkpoint and warns about incomplete ones.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "checkpoint/file_io.h"
#include "checkpoint/layout.h"
#include "checkpoint/manifest.h"
#include "checkpoint/safetensors.h"
#include "dtrain/checkpoint.h"
#include "dtrain/error.h"
#include "dtrain/nn/module.h"
#include "dtrain/ops.h"

namespace fs = std::filesystem;

namespace dtrain::checkpoint {

struct Reader::Impl {
  Manifest manifest;
  struct Open {
    std::unique_ptr<io::InFile> file;
    st::Header header;
  };
  std::map<std::string, Open> open;

  KeyPtr key;
  const Open& get(const std::string& dir, const std::string& name) {
    auto it = open.find(name);
    if (it != open.end()) return it->second;
    const std::string path = dir + "/" + name;
    const auto& info = manifest.files.at(name);
    Open o;
    o.file = std::make_unique<io::InFile>(path, key);
    DTRAIN_CHECK(o.file->size() == info.bytes, "checkpoint file ", path, " is ",
                 o.file->size() < info.bytes ? "truncated" : "too long", ": ", o.file->size(),
                 " bytes, the manifest records ", info.bytes, " (restore it or use another checkpoint)");
    const std::string sum = io::hash_file(path, key);
    DTRAIN_CHECK(sum == info.blake2b, "checkpoint file ", path,
                 " fails its checksum (BLAKE2b differs from the manifest): the file is corrupted or was modified; "
                 "restore it or use another checkpoint");
    o.header = st::read_header(path, key);
    return open.emplace(name, std::move(o)).first->second;
  }
};

Reader::Reader(const std::string& dir, KeyPtr key) : dir_(dir), key_(std::move(key)), impl_(std::make_unique<Impl>()) {
  impl_->key = key_;
  const std::string mpath = dir + "/" + layout::kManifest;
  DTRAIN_CHECK(fs::exists(mpath), "checkpoint ", dir, " has no ", layout::kManifest,
               ": it is incomplete (a save was interrupted) or not a checkpoint; use another one");
  impl_->manifest = Manifest::parse(io::read_small_file(mpath, kMaxManifestBytes, key_), mpath);
  for (const auto& [name, info] : impl_->manifest.files) {
    DTRAIN_CHECK(fs::exists(dir + "/" + name), "checkpoint manifest ", mpath, " names shard file ", name,
                 ", which is missing from ", dir,
                 "; the checkpoint is incomplete (restore the file or use another one)");
  }
}

Reader::~Reader() = default;

const Meta& Reader::meta() const {
  return impl_->manifest.meta;
}

std::vector<std::string> Reader::tensor_names() const {
  std::vector<std::string> out;
  for (const auto& [name, t] : impl_->manifest.tensors) out.push_back(name);
  return out;
}

Shape Reader::shape(const std::string& name) const {
  auto it = impl_->manifest.tensors.find(name);
  DTRAIN_CHECK(it != impl_->manifest.tensors.end(), "checkpoint ", dir_, " has no tensor '", name,
               "' (was it saved from a different model or optimizer?)");
  return it->second.shape;
}

std::vector<std::string> Reader::files() const {
  std::vector<std::string> out;
  for (const auto& [name, f] : impl_->manifest.files) out.push_back(name);
  return out;
}

void Reader::verify(const std::string& file) const {
  DTRAIN_CHECK(impl_->manifest.files.count(file) == 1, "checkpoint ", dir_, " has no file ", file);
  impl_->get(dir_, file);
}

void Reader::verify_all() const {
  for (const auto& f : files()) verify(f);
}

void Reader::read(const std::string& name, int64_t begin, int64_t end, Tensor& out) {
  const Shape s = shape(name);
  const auto& t = impl_->manifest.tensors.at(name);
  DTRAIN_CHECK(0 <= begin && begin <= end && end <= shape_numel(s), "checkpoint read of '", name, "' [", begin, ", ",
               end, ") is outside its ", shape_numel(s), " elements");
  DTRAIN_CHECK(out.is_cpu() && out.dtype() == DType::f32 && out.numel() == end - begin, "checkpoint read of '", name,
               "': the output must be an f32 CPU tensor of ", end - begin, " elements");
  float* dst = out.data<float>();
  for (const auto& sh : t.shards) {
    const int64_t a = std::max(begin, sh.begin), b = std::min(end, sh.end);
    if (b <= a) continue;
    const auto& o = impl_->get(dir_, sh.file);
    const st::Entry* e = o.header.find(name);
    const std::string path = dir_ + "/" + sh.file;
    DTRAIN_CHECK(e != nullptr, "checkpoint file ", path, " lacks tensor '", name, "' that the manifest places there");
    DTRAIN_CHECK(e->dtype == "F32" && e->end - e->begin == static_cast<uint64_t>(sh.end - sh.begin) * 4,
                 "checkpoint file ", path, ": tensor '", name, "' has dtype ", e->dtype, " and ", e->end - e->begin,
                 " bytes, the manifest expects F32 with ", (sh.end - sh.begin) * 4);
    o.file->read_at(o.header.data_start + e->begin + static_cast<uint64_t>(a - sh.begin) * 4, dst + (a - begin),
                    static_cast<size_t>(b - a) * 4);
  }
}

Tensor Reader::read_full(const std::string& name) {
  const Shape s = shape(name);
  Tensor out = Tensor::empty({shape_numel(s)}, DType::f32);
  read(name, 0, shape_numel(s), out);
  return out.reshape(s);
}

namespace {
// A byte range of a file's plaintext to copy out while the file is verified.
struct Segment {
  uint64_t offset = 0;
  size_t bytes = 0;
  char* dst = nullptr;
};
}  // namespace

void Reader::load(const std::vector<Piece>& pieces) {
  // Check every piece against the manifest before reading anything.
  for (const auto& p : pieces) {
    DTRAIN_CHECK(p.data.dtype() == DType::f32, "checkpoint ", dir_, " holds f32 values for '", p.name,
                 "' but the tensor to load into is ", dtype_name(p.data.dtype()),
                 "; checkpoints hold f32 master weights and optimizer state: train bf16/f16 through "
                 "parallel::DataParallel (f32 masters) and resume with checkpoint::resume_engine");
    const Shape s = shape(p.name);
    DTRAIN_CHECK(s == p.shape, "checkpoint ", dir_, ": tensor '", p.name, "' has shape ", shape_str(s),
                 " but the model's is ", shape_str(p.shape), " (a different model configuration?)");
    DTRAIN_CHECK(p.data.dtype() == DType::f32, "checkpoint load into '", p.name, "': the target is ",
                 dtype_name(p.data.dtype()), ", only f32 targets are supported");
    DTRAIN_CHECK(0 <= p.begin && p.begin <= p.end && p.end <= shape_numel(s) && p.data.numel() == p.end - p.begin,
                 "checkpoint load into '", p.name, "': range [", p.begin, ", ", p.end, ") does not fit the tensor");
  }
  // Plan: for every file not verified yet, the byte ranges to copy out while
  // it is read once from end to end, hashed (and decrypted); files verified
  // earlier are read by range afterwards.
  std::vector<Tensor> hosts;
  std::map<std::string, std::vector<Segment>> plan;
  std::map<std::string, st::Header> headers;
  struct Later {
    size_t piece;
    int64_t a, b;
  };
  std::vector<Later> later;
  for (size_t i = 0; i < pieces.size(); ++i) {
    const Piece& p = pieces[i];
    hosts.push_back(Tensor::empty({p.end - p.begin}, DType::f32));
    for (const auto& sh : impl_->manifest.tensors.at(p.name).shards) {
      const int64_t a = std::max(p.begin, sh.begin), b = std::min(p.end, sh.end);
      if (b <= a) continue;
      if (impl_->open.count(sh.file) != 0) {
        later.push_back({i, a, b});
        continue;
      }
      const std::string path = dir_ + "/" + sh.file;
      auto h = headers.find(sh.file);
      if (h == headers.end()) h = headers.emplace(sh.file, st::read_header(path, key_)).first;
      const st::Entry* e = h->second.find(p.name);
      DTRAIN_CHECK(e != nullptr, "checkpoint file ", path, " lacks tensor '", p.name,
                   "' that the manifest places there");
      DTRAIN_CHECK(e->dtype == "F32" && e->end - e->begin == static_cast<uint64_t>(sh.end - sh.begin) * 4,
                   "checkpoint file ", path, ": tensor '", p.name, "' has dtype ", e->dtype, " and ", e->end - e->begin,
                   " bytes, the manifest expects F32 with ", (sh.end - sh.begin) * 4);
      plan[sh.file].push_back({h->second.data_start + e->begin + static_cast<uint64_t>(a - sh.begin) * 4,
                               static_cast<size_t>(b - a) * 4,
                               static_cast<char*>(hosts[i].data_ptr()) + (a - p.begin) * 4});
    }
  }
  for (auto& [file, segments] : plan) {
    const std::string path = dir_ + "/" + file;
    const auto& info = impl_->manifest.files.at(file);
    io::InFile f(path, key_);
    DTRAIN_CHECK(f.size() == info.bytes, "checkpoint file ", path, " is ",
                 f.size() < info.bytes ? "truncated" : "too long", ": ", f.size(), " bytes, the manifest records ",
                 info.bytes, " (restore it or use another checkpoint)");
    std::sort(segments.begin(), segments.end(), [](const Segment& x, const Segment& y) { return x.offset < y.offset; });
    size_t first = 0;
    const std::string sum = io::stream_file(f, [&](uint64_t off, const char* data, size_t n) {
      while (first < segments.size() && segments[first].offset + segments[first].bytes <= off) ++first;
      for (size_t k = first; k < segments.size() && segments[k].offset < off + n; ++k) {
        const Segment& sg = segments[k];
        const uint64_t lo = std::max(off, sg.offset), hi = std::min(off + n, sg.offset + sg.bytes);
        if (hi > lo) std::memcpy(sg.dst + (lo - sg.offset), data + (lo - off), static_cast<size_t>(hi - lo));
      }
    });
    DTRAIN_CHECK(sum == info.blake2b, "checkpoint file ", path,
                 " fails its checksum (BLAKE2b differs from the manifest): the file is corrupted or was modified; "
                 "restore it or use another checkpoint");
    Impl::Open o;  // verified: later reads of this file skip the checksum
    o.file = std::make_unique<io::InFile>(path, key_);
    o.header = std::move(headers.at(file));
    impl_->open.emplace(file, std::move(o));
  }
  for (const auto& l : later) {
    Tensor part = hosts[l.piece].narrow(l.a - pieces[l.piece].begin, l.b - l.a);
    read(pieces[l.piece].name, l.a, l.b, part);
  }
  // Everything read and verified: only now are the targets written.
  for (size_t i = 0; i < pieces.size(); ++i) {
    Tensor dst = pieces[i].data;
    dst.copy_(dst.is_cpu() ? hosts[i] : hosts[i].to(dst.device()));
  }
}

void Reader::load_parameters(const nn::Module& model) {
  // Read (and so verify) everything before writing anything.
  std::vector<std::pair<Tensor, Tensor>> todo;
  for (const auto& np : model.named_parameters()) {
    Tensor v = np.param->value;
    if (!v.defined()) continue;  // ZeRO-3: the engine holds only the shard
    DTRAIN_CHECK(is_floating(v.dtype()), "checkpoint load: parameter '", np.name, "' is ", dtype_name(v.dtype()),
                 "; checkpoints hold f32 values for f32, bf16 or f16 parameters");
    const Shape s = shape(np.name);
    DTRAIN_CHECK(s == np.param->shape(), "checkpoint ", dir_, ": parameter '", np.name, "' has shape ", shape_str(s),
                 " but the model's is ", shape_str(np.param->shape()), " (a different model configuration?)");
    todo.emplace_back(v, read_full(np.name));
  }
  for (auto& [v, full] : todo) {
    Tensor src = full;
    if (v.dtype() != DType::f32) {  // rounded to nearest even, as the engine rounds its masters
      src = Tensor::empty(full.shape(), v.dtype());
      ops::cast(src, full);
    }
    v.copy_(v.is_cpu() ? src : src.to(v.device()));
  }
}

std::string find_latest(const std::string& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return "";
  int64_t best = -1;
  std::string best_path;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(layout::kTmpPrefix, 0) == 0) {
      std::fprintf(stderr, "checkpoint: warning: ignoring incomplete checkpoint %s (a save was interrupted)\n",
                   e.path().c_str());
      continue;
    }
    const int64_t step = layout::parse_step_dir(name);
    if (step < 0) continue;
    if (!fs::exists(e.path() / layout::kManifest)) {
      std::fprintf(stderr, "checkpoint: warning: ignoring incomplete checkpoint %s (no %s)\n", e.path().c_str(),
                   layout::kManifest);
      continue;
    }
    if (step > best) {
      best = step;
      best_path = e.path().string();
    }
  }
  // `latest` is a hint written last; the directory scan above is authoritative.
  const fs::path latest = fs::path(root) / layout::kLatest;
  if (fs::exists(latest) && !best_path.empty()) {
    std::string hint = io::read_small_file(latest.string(), 4096);
    while (!hint.empty() && (hint.back() == '\n' || hint.back() == ' ')) hint.pop_back();
    if (hint != fs::path(best_path).filename().string()) {
      std::fprintf(stderr, "checkpoint: warning: %s names '%s' but the newest complete checkpoint is %s\n",
                   latest.c_str(), hint.c_str(), best_path.c_str());
    }
  }
  std::fflush(stderr);
  return best_path;
}

}  // namespace dtrain::checkpoint
