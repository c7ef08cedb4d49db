// manifest.json: serialization and hardened parsing (see manifest.h).
#include "checkpoint/manifest.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "dtrain/error.h"

namespace dtrain::checkpoint {

using nlohmann::json;

namespace {
constexpr int kVersion = 1;

// Elements of a shape whose dimensions are each in [0, 2^40]; -1 past 2^40 in total.
int64_t shape_numel_checked(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d != 0 && n > (int64_t{1} << 40) / d) return -1;
    n *= d;
  }
  return n;
}
// Every number of a manifest is an integer except the optimizer's
// hyper-parameters and the f16 loss scale. nlohmann's get<int64_t>() casts a
// floating-point value, which is undefined behaviour out of range (a fuzzer
// found 3.3e65 in "schedule.step"), so floats anywhere else are refused
// before any get<>.
bool has_float_outside_hyper(const json& v, bool allowed, bool in_loss_scaler = false) {
  if (v.is_number_float()) return !allowed;
  if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) {
      const bool ok = allowed || it.key() == "hyper" || (in_loss_scaler && it.key() == "scale");
      if (has_float_outside_hyper(it.value(), ok, it.key() == "loss_scaler")) return true;
    }
  } else if (v.is_array()) {
    for (const auto& e : v) {
      if (has_float_outside_hyper(e, allowed)) return true;
    }
  }
  return false;
}

}  // namespace

std::string Manifest::to_json() const {
  json j;
  j["format"] = "dtrain-checkpoint";
  j["version"] = kVersion;
  j["step"] = meta.step;
  j["world_size"] = meta.world_size;
  j["zero_stage"] = meta.zero_stage;
  j["model"] = meta.model;
  j["optimizer"] = {{"name", meta.optimizer}, {"steps", meta.optimizer_steps}, {"hyper", meta.hyper}};
  j["schedule"] = {{"step", meta.schedule_step}};
  j["data"] = {{"epoch", meta.data.epoch}, {"shard", meta.data.shard}, {"offset", meta.data.offset}};
  j["rng"] = {{"seed", meta.seed}, {"state", meta.rng}};
  j["precision"] = {{"param_dtype", meta.param_dtype}, {"master_dtype", "f32"}};
  if (meta.has_loss_scaler) {
    j["precision"]["loss_scaler"] = {{"scale", meta.loss_scaler.scale},
                                     {"good_steps", meta.loss_scaler.good_steps},
                                     {"skipped_steps", meta.loss_scaler.skipped_steps}};
  }
  json ts = json::object();
  for (const auto& [name, t] : tensors) {
    json shards = json::array();
    for (const auto& s : t.shards) shards.push_back({{"file", s.file}, {"begin", s.begin}, {"end", s.end}});
    ts[name] = {{"shape", t.shape}, {"dtype", t.dtype}, {"shards", shards}};
  }
  j["tensors"] = ts;
  json fs = json::object();
  for (const auto& [name, f] : files) fs[name] = {{"bytes", f.bytes}, {"blake2b", f.blake2b}};
  j["files"] = fs;
  return j.dump(1);
}

Manifest Manifest::parse(const std::string& text, const std::string& where) {
  auto fail = [&](const std::string& what) {
    DTRAIN_THROW("checkpoint manifest ", where, " is invalid: ", what,
                 "; the checkpoint is damaged or was not written by dtrain (use another checkpoint)");
  };
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail("not valid JSON (truncated?)");
  if (!j.is_object()) fail("not a JSON object");
  if (has_float_outside_hyper(j, false)) fail("a count, size or position is not an integer");
  Manifest m;
  try {
    if (j.value("format", std::string()) != "dtrain-checkpoint") fail("'format' is not \"dtrain-checkpoint\"");
    if (j.value("version", 0) != kVersion) fail("unsupported version (this dtrain reads version 1)");
    m.meta.step = j.at("step").get<int64_t>();
    m.meta.world_size = j.at("world_size").get<int>();
    m.meta.zero_stage = j.at("zero_stage").get<int>();
    if (m.meta.step < 0 || m.meta.world_size < 1 || m.meta.zero_stage < 0 || m.meta.zero_stage > 3) {
      fail("step, world_size or zero_stage out of range");
    }
    m.meta.model = j.at("model").get<std::map<std::string, int64_t>>();
    const json& o = j.at("optimizer");
    m.meta.optimizer = o.at("name").get<std::string>();
    m.meta.optimizer_steps = o.at("steps").get<int64_t>();
    m.meta.hyper = o.at("hyper").get<std::map<std::string, double>>();
    m.meta.schedule_step = j.at("schedule").at("step").get<int64_t>();
    const json& d = j.at("data");
    m.meta.data.epoch = d.at("epoch").get<int64_t>();
    m.meta.data.shard = d.at("shard").get<int64_t>();
    m.meta.data.offset = d.at("offset").get<int64_t>();
    m.meta.seed = j.at("rng").at("seed").get<uint64_t>();
    m.meta.rng = j.at("rng").at("state").get<std::string>();
    if (j.contains("precision")) {  // absent before mixed precision: f32
      const json& p = j.at("precision");
      m.meta.param_dtype = p.at("param_dtype").get<std::string>();
      if (m.meta.param_dtype != "f32" && m.meta.param_dtype != "bf16" && m.meta.param_dtype != "f16") {
        fail("precision.param_dtype '" + m.meta.param_dtype + "' is not f32, bf16 or f16");
      }
      if (p.value("master_dtype", std::string("f32")) != "f32") fail("precision.master_dtype is not f32");
      if (p.contains("loss_scaler")) {
        const json& ls = p.at("loss_scaler");
        m.meta.has_loss_scaler = true;
        const double scale = ls.at("scale").get<double>();
        if (!(scale > 0.0 && scale <= 3.0e38)) fail("precision.loss_scaler.scale is not a positive f32 value");
        m.meta.loss_scaler.scale = static_cast<float>(scale);
        m.meta.loss_scaler.good_steps = ls.at("good_steps").get<int64_t>();
        m.meta.loss_scaler.skipped_steps = ls.at("skipped_steps").get<int64_t>();
      }
    }
    for (auto it = j.at("files").begin(); it != j.at("files").end(); ++it) {
      const std::string& f = it.key();
      if (f.empty() || f.size() > 255 || f.find('/') != std::string::npos || f == "." || f == ".." ||
          f == "manifest.json") {
        fail("file name '" + f + "' is not a plain file name inside the checkpoint");
      }
      FileInfo fi;
      fi.bytes = it.value().at("bytes").get<uint64_t>();
      fi.blake2b = it.value().at("blake2b").get<std::string>();
      if (fi.blake2b.size() != 64) fail("file '" + f + "' has a malformed checksum");
      m.files[f] = fi;
    }
    for (auto it = j.at("tensors").begin(); it != j.at("tensors").end(); ++it) {
      const std::string& name = it.key();
      TensorInfo t;
      t.shape = it.value().at("shape").get<Shape>();
      t.dtype = it.value().at("dtype").get<std::string>();
      if (t.dtype != "F32") fail("tensor '" + name + "' has dtype " + t.dtype + " (dtrain checkpoints hold F32)");
      if (t.shape.size() > 16) fail("tensor '" + name + "' has more than 16 dimensions");
      for (int64_t dim : t.shape) {
        if (dim < 0 || dim > (int64_t{1} << 40)) fail("tensor '" + name + "' has a bad dimension");
      }
      const int64_t numel = shape_numel_checked(t.shape);
      if (numel < 0 || numel > (int64_t{1} << 40)) fail("tensor '" + name + "' is too large");
      for (const auto& s : it.value().at("shards")) {
        Shard sh{s.at("file").get<std::string>(), s.at("begin").get<int64_t>(), s.at("end").get<int64_t>()};
        if (m.files.count(sh.file) == 0) fail("tensor '" + name + "' names file '" + sh.file + "' not in 'files'");
        t.shards.push_back(sh);
      }
      std::sort(t.shards.begin(), t.shards.end(), [](const Shard& a, const Shard& b) { return a.begin < b.begin; });
      int64_t covered = 0;
      for (const auto& s : t.shards) {
        if (s.begin != covered || s.end <= s.begin || s.end > numel) {
          fail("tensor '" + name + "' shard ranges do not cover [0, " + std::to_string(numel) + ") exactly once");
        }
        covered = s.end;
      }
      if (covered != numel) fail("tensor '" + name + "' shard ranges do not cover all of it");
      m.tensors[name] = std::move(t);
    }
  } catch (const json::exception& e) {
    fail(std::string("missing or mistyped field (") + e.what() + ")");
  }
  return m;
}

}  // namespace dtrain::checkpoint
