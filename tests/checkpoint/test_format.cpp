// The checkpoint format in one process: a save / load round trip (whole and
// in ranges that cross files), the safetensors header parser against hostile
// headers, and refusals of damaged checkpoints (truncated file, flipped byte,
// a manifest naming a missing shard, a crash before publishing), each with a
// message naming the file and the problem.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <functional>

#include "check_close.h"
#include "checkpoint/manifest.h"
#include "checkpoint/safetensors.h"
#include "checkpoint_test_support.h"
#include "dtrain/checkpoint.h"

using namespace dtrain;
using dtrain::testing::TempDir;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

Tensor ramp(int64_t n, float base) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = base + 0.25f * static_cast<float>(i);
  return Tensor::from_vector(v, {n});
}

checkpoint::Meta meta_at(int64_t step) {
  checkpoint::Meta m;
  m.step = step;
  m.model = {{"n_layer", 1}};
  m.hyper = {{"lr", 0.001}};
  m.optimizer_steps = step;
  m.data = {1, 0, 4096};
  m.seed = 1337;
  return m;
}

std::vector<checkpoint::Piece> pieces_of(const Tensor& a, const Tensor& b) {
  return {{"a", {3, 4}, 0, 12, a}, {"b", {5}, 0, 5, b}};
}

std::string save_one(const std::string& root, int64_t step, const Tensor& a, const Tensor& b) {
  return checkpoint::save(root, meta_at(step), pieces_of(a, b), nullptr);
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

void flip_byte(const std::string& path, uint64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x01);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

}  // namespace

TEST_CASE("checkpoint round trip: tensors, ranges and meta come back bitwise", "[checkpoint]") {
  TempDir d;
  const Tensor a = ramp(12, -1.0f), b = ramp(5, 3.0f);
  const std::string path = save_one(d.path, 7, a, b);
  CHECK(path == d.path + "/step-00000007");
  CHECK(checkpoint::find_latest(d.path) == path);
  checkpoint::Reader r(path);
  CHECK(r.meta().step == 7);
  CHECK(r.meta().data == data::LoaderPosition{1, 0, 4096});
  CHECK(r.meta().seed == 1337);
  CHECK(r.shape("a") == Shape{3, 4});
  CHECK_CLOSE(r.read_full("a").flatten(), a, 0.0);
  CHECK_CLOSE(r.read_full("b"), b, 0.0);
  Tensor part = Tensor::empty({5});
  r.read("a", 6, 11, part);
  CHECK_CLOSE(part, a.narrow(6, 5), 0.0);
  // Loading pieces into live buffers.
  Tensor into = Tensor::zeros({4});
  r.load({{"a", {3, 4}, 2, 6, into}});
  CHECK_CLOSE(into, a.narrow(2, 4), 0.0);
  r.verify_all();
  CHECK_THAT(error_of([&] { r.load({{"a", {4, 3}, 0, 4, into}}); }), Contains("shape"));
  CHECK_THAT(error_of([&] { r.shape("nope"); }), Contains("no tensor 'nope'"));
}

TEST_CASE("checkpoint keep-last keeps the newest K and latest points at the newest", "[checkpoint]") {
  TempDir d;
  const Tensor a = ramp(12, 0.0f), b = ramp(5, 0.0f);
  checkpoint::SaveOptions o;
  o.keep_last = 2;
  for (int64_t s : {10, 20, 30}) checkpoint::save(d.path, meta_at(s), pieces_of(a, b), nullptr, o);
  CHECK_FALSE(fs::exists(d.path + "/step-00000010"));
  CHECK(fs::exists(d.path + "/step-00000020/manifest.json"));
  CHECK(checkpoint::find_latest(d.path) == d.path + "/step-00000030");
  std::ifstream latest(d.path + "/latest");
  std::string name;
  latest >> name;
  CHECK(name == "step-00000030");
}

TEST_CASE("checkpoint refuses a truncated file, naming it", "[checkpoint]") {
  TempDir d;
  const std::string path = save_one(d.path, 1, ramp(12, 0.0f), ramp(5, 0.0f));
  const std::string file = path + "/rank-00000.safetensors";
  fs::resize_file(file, fs::file_size(file) - 3);
  checkpoint::Reader r(path);
  const std::string msg = error_of([&] { r.read_full("a"); });
  CHECK_THAT(msg, Contains(file) && Contains("truncated"));
}

TEST_CASE("checkpoint refuses a flipped byte, naming the file and the checksum", "[checkpoint]") {
  TempDir d;
  const std::string path = save_one(d.path, 1, ramp(12, 0.0f), ramp(5, 0.0f));
  const std::string file = path + "/rank-00000.safetensors";
  flip_byte(file, fs::file_size(file) - 5);  // inside tensor data
  checkpoint::Reader r(path);
  const std::string msg = error_of([&] { r.read_full("b"); });
  CHECK_THAT(msg, Contains(file) && Contains("checksum"));
  CHECK_THAT(error_of([&] { r.verify_all(); }), Contains("checksum"));
}

TEST_CASE("checkpoint refuses a manifest naming a missing shard", "[checkpoint]") {
  TempDir d;
  const std::string path = save_one(d.path, 1, ramp(12, 0.0f), ramp(5, 0.0f));
  fs::remove(path + "/rank-00000.safetensors");
  const std::string msg = error_of([&] { checkpoint::Reader r(path); });
  CHECK_THAT(msg, Contains("rank-00000.safetensors") && Contains("missing"));
}

TEST_CASE("checkpoint refuses a damaged manifest, naming it", "[checkpoint]") {
  TempDir d;
  const std::string path = save_one(d.path, 1, ramp(12, 0.0f), ramp(5, 0.0f));
  const std::string mpath = path + "/manifest.json";
  fs::resize_file(mpath, fs::file_size(mpath) / 2);
  const std::string msg = error_of([&] { checkpoint::Reader r(path); });
  CHECK_THAT(msg, Contains(mpath) && Contains("not valid JSON"));
}

TEST_CASE("an interrupted save is ignored with a warning and the previous checkpoint loads", "[checkpoint]") {
  TempDir d;
  const Tensor a = ramp(12, 0.0f), b = ramp(5, 0.0f);
  save_one(d.path, 10, a, b);
  // What a crash between the shard writes and the rename leaves behind.
  fs::create_directories(d.path + "/.tmp-step-00000020");
  std::ofstream(d.path + "/.tmp-step-00000020/rank-00000.safetensors") << "partial";
  fs::create_directories(d.path + "/step-00000030");  // a directory without a manifest
  const std::string latest = checkpoint::find_latest(d.path);
  CHECK(latest == d.path + "/step-00000010");
  checkpoint::Reader r(latest);
  CHECK_CLOSE(r.read_full("b"), b, 0.0);
  CHECK_THAT(error_of([&] { checkpoint::Reader bad(d.path + "/step-00000030"); }),
             Contains("no manifest.json") && Contains("incomplete"));
  CHECK(checkpoint::find_latest(d.path + "/does-not-exist").empty());
  // The next successful save removes the superseded partial one.
  save_one(d.path, 40, a, b);
  CHECK_FALSE(fs::exists(d.path + "/.tmp-step-00000020"));
}

TEST_CASE("safetensors header parser refuses hostile headers", "[checkpoint]") {
  using checkpoint::st::parse_header;
  auto err = [](const std::string& json, uint64_t data) {
    return error_of([&] { parse_header(json.data(), json.size(), data, "f.safetensors"); });
  };
  const std::string good = R"({"x":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"__metadata__":{"k":"v"}})";
  const auto h = parse_header(good.data(), good.size(), 24, "f.safetensors");
  REQUIRE(h.entries.size() == 1);
  CHECK(h.entries[0].shape == std::vector<int64_t>{2, 3});
  CHECK(h.metadata.at("k") == "v");
  CHECK_THAT(err(good, 20), Contains("f.safetensors") && Contains("outside"));
  CHECK_THAT(err("{not json", 0), Contains("not valid JSON"));
  CHECK_THAT(err("[]", 0), Contains("not a JSON object"));
  CHECK_THAT(err(R"({"x":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}})", 4), Contains("unknown dtype"));
  CHECK_THAT(err(R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4), Contains("negative"));
  CHECK_THAT(err(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4), Contains("need 8"));
  CHECK_THAT(err(R"({"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4),
             Contains("too large"));
  CHECK_THAT(err(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", 4), Contains("outside"));
  CHECK_THAT(err(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                 R"("y":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})",
                 8),
             Contains("overlap"));
  CHECK_THAT(err(R"({"__metadata__":{"k":1}})", 0), Contains("not a string"));
  CHECK_THAT(err(R"({"x":{"dtype":"F32","shape":[1]}})", 4), Contains("data_offsets"));
}

TEST_CASE("manifest parser refuses names outside the checkpoint and gaps in shard ranges", "[checkpoint]") {
  checkpoint::Manifest m;
  m.meta = meta_at(3);
  m.files["rank-00000.safetensors"] = {100, std::string(64, 'a')};
  m.tensors["a"] = {{4}, "F32", {{"rank-00000.safetensors", 0, 4}}};
  const auto back = checkpoint::Manifest::parse(m.to_json(), "m.json");
  CHECK(back.tensors.at("a").shards.size() == 1);
  CHECK(back.meta.step == 3);
  auto err = [](const checkpoint::Manifest& bad) {
    return error_of([&] { checkpoint::Manifest::parse(bad.to_json(), "m.json"); });
  };
  auto gap = m;
  gap.tensors["a"].shards[0].begin = 1;
  CHECK_THAT(err(gap), Contains("m.json") && Contains("cover"));
  auto escape = m;
  escape.files["../etc/passwd"] = {1, std::string(64, 'a')};
  CHECK_THAT(err(escape), Contains("not a plain file name"));
  auto unknown = m;
  unknown.tensors["a"].shards[0].file = "rank-00001.safetensors";
  CHECK_THAT(err(unknown), Contains("not in 'files'"));
  CHECK_THAT(error_of([&] { checkpoint::Manifest::parse(R"({"format":"dtrain-checkpoint","version":1})", "m.json"); }),
             Contains("missing or mistyped field"));
}

TEST_CASE("encrypted checkpoints: round trip across chunks, no plaintext on disk, refusals", "[checkpoint]") {
  TempDir d;
  const auto key = checkpoint::EncryptionKey::from_hex(checkpoint::EncryptionKey::generate_hex(), "test");
  const auto other = checkpoint::EncryptionKey::from_hex(std::string(64, '7'), "test");
  const Tensor big = ramp(600000, 1.0f);  // 2.4 MB: three 1 MiB chunks
  const Tensor b = ramp(5, 3.0f);
  checkpoint::SaveOptions o;
  o.key = key;
  const std::string path =
      checkpoint::save(d.path, meta_at(4), {{"big", {600000}, 0, 600000, big}, {"b", {5}, 0, 5, b}}, nullptr, o);
  {
    checkpoint::Reader r(path, key);
    CHECK(r.meta().step == 4);
    CHECK_CLOSE(r.read_full("big"), big, 0.0);
    Tensor part = Tensor::empty({1000});
    r.read("big", 262000, 263000, part);  // crosses the first chunk boundary (262144 floats)
    CHECK_CLOSE(part, big.narrow(262000, 1000), 0.0);
    r.verify_all();
  }
  std::ifstream m(path + "/manifest.json", std::ios::binary);
  const std::string on_disk((std::istreambuf_iterator<char>(m)), std::istreambuf_iterator<char>());
  CHECK(on_disk.find("dtrain-checkpoint") == std::string::npos);
  CHECK(on_disk.find("big") == std::string::npos);

  CHECK_THAT(error_of([&] { checkpoint::Reader r(path); }), Contains("manifest.json") && Contains("is encrypted"));
  CHECK_THAT(error_of([&] { checkpoint::Reader r(path, other); }), Contains("manifest.json") && Contains("wrong key"));

  // A file from another save under the same key authenticates, but the manifest's checksum refuses it.
  {
    TempDir other_save;
    const std::string p2 = checkpoint::save(other_save.path, meta_at(4),
                                            {{"big", {600000}, 0, 600000, big}, {"b", {5}, 0, 5, b}}, nullptr, o);
    TempDir copy;
    fs::copy(path, copy.path + "/ck");
    fs::copy_file(p2 + "/rank-00000.safetensors", copy.path + "/ck/rank-00000.safetensors",
                  fs::copy_options::overwrite_existing);
    checkpoint::Reader swapped(copy.path + "/ck", key);
    CHECK_THAT(error_of([&] { swapped.verify_all(); }), Contains("rank-00000.safetensors") && Contains("checksum"));
  }
  const std::string file = path + "/rank-00000.safetensors";
  flip_byte(file, fs::file_size(file) / 2);
  checkpoint::Reader r(path, key);
  Tensor target = Tensor::zeros({5});
  const std::string msg = error_of([&] {
    r.load({{"b", {5}, 0, 5, target}, {"big", {600000}, 0, 10, Tensor::zeros({10})}});
  });
  CHECK_THAT(msg, Contains(file) && Contains("fails authentication"));
  CHECK_CLOSE(target, Tensor::zeros({5}), 0.0);  // nothing loaded

  fs::resize_file(file, fs::file_size(file) - 100);
  checkpoint::Reader r2(path, key);
  CHECK_THAT(error_of([&] { r2.read_full("b"); }), Contains(file));

  const std::string plain = save_one(d.path + "/plain", 1, ramp(12, 0.0f), b);
  CHECK_THAT(error_of([&] { checkpoint::Reader p(plain, key); }), Contains("not encrypted, but a key was given"));
  CHECK_THAT(error_of([&] { checkpoint::EncryptionKey::from_hex("abc", "DTRAIN_CHECKPOINT_KEY"); }),
             Contains("DTRAIN_CHECKPOINT_KEY") && Contains("64 hex digits"));
}
