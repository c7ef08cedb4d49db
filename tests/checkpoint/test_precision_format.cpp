// Checkpoints of mixed-precision models in one process (the engine at world
// size 1): what a precision change on resume does to masters and parameters,
// the f16 loss scaler through the manifest, parameters-only loads and the
// Hugging Face export / import with bf16 models, and the refusals: a damaged
// bf16 shard, dtypes that do not fit, an impossible manifest.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>

#include "check_close.h"
#include "checkpoint/file_io.h"
#include "checkpoint/safetensors.h"
#include "checkpoint_test_support.h"
#include "dtrain/checkpoint.h"
#include "dtrain/comm/communicator.h"
#include "dtrain/nn/gpt.h"
#include "dtrain/optim/adamw.h"
#include "dtrain/parallel/data_parallel.h"
#include "precision/small_gpt.h"
#include "test_support.h"

using namespace dtrain;
using namespace dtrain::testing;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

constexpr int64_t kVocab = 32, kSeq = 8, kRows = 4;

parallel::Precision precision_of(DType dt) {
  return dt == DType::f32 ? parallel::Precision::f32
                          : (dt == DType::bf16 ? parallel::Precision::bf16 : parallel::Precision::f16);
}

// A small GPT trained through the engine at world size 1, as train_gpt runs it.
struct Run {
  nn::GPT model;
  std::unique_ptr<parallel::DataParallel> dp;
  std::unique_ptr<optim::AdamW> opt;

  Run(DType dt, uint64_t seed, int stage = 0) : model(small_gpt(dt, 16, kVocab, kSeq), Device::cpu(), seed) {
    parallel::DataParallelOptions o;
    o.stage = stage;
    o.precision = precision_of(dt);
    o.initial_loss_scale = 1024.0f;
    o.loss_scale_window = 2;
    dp = std::make_unique<parallel::DataParallel>(model, comm::Communicator::single_process(), o);
    opt = std::make_unique<optim::AdamW>(dp->param_groups(0.1f));
    opt->init_state();
  }

  std::vector<float> train(int steps) {
    std::vector<float> out;
    for (int s = 0; s < steps; ++s) {
      const int64_t salt = opt->steps_done();
      Tensor x = Tensor::empty({kRows, kSeq}, DType::i32), y = Tensor::empty({kRows, kSeq}, DType::i32);
      for (int64_t i = 0; i < x.numel(); ++i) {
        x.set_item(i, static_cast<double>((i * 7 + salt * 5 + (i * i) % 3) % kVocab));
        y.set_item(i, static_cast<double>((i * 11 + salt * 3 + 1) % kVocab));
      }
      out.push_back(model.forward(x, y, dp->grad_scale()));
      model.backward();
      dp->step(*opt, 1e-2f, 1.0f);
    }
    return out;
  }

  std::string save(const std::string& root) {
    checkpoint::Meta m;
    m.step = opt->steps_done();
    m.optimizer_steps = opt->steps_done();
    checkpoint::record_engine_state(*dp, m);
    return checkpoint::save(root, m, checkpoint::owned_pieces(model, *opt, 0, 1, dp->options().stage == 0), nullptr);
  }

  std::string resume(const std::string& dir) {
    checkpoint::Reader reader(dir);
    return checkpoint::resume_engine(reader, model, *opt, *dp);
  }

  // Every parameter's value widened to f32 (exact), gathered at stage 3.
  std::vector<Tensor> params() const {
    std::vector<Tensor> out;
    for (auto& [name, value] : dp->full_parameters()) out.push_back(value);
    return out;
  }
};

void edit_manifest(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
  const std::string path = dir + "/manifest.json";
  std::ifstream in(path);
  auto j = nlohmann::json::parse(in);
  edit(j);
  std::ofstream(path) << j.dump(1);
}

}  // namespace

TEST_CASE("an f32 checkpoint resumes a bf16 engine: the values become the masters, parameters are rounded",
          "[checkpoint][precision]") {
  TempDir d;
  Run f32(DType::f32, 3);
  f32.train(2);
  const std::string ck32 = f32.save(d.path + "/f32");
  CHECK(checkpoint::Reader(ck32).meta().param_dtype == "f32");

  Run bf16(DType::bf16, 5);
  CHECK_THAT(bf16.resume(ck32), Contains("checkpoint saved in f32, resumed in bf16"));
  checkpoint::Reader r32(ck32);
  for (const auto& np : bf16.model.named_parameters()) {
    INFO(np.name);
    REQUIRE(np.param->value.dtype() == DType::bf16);
    CHECK_CLOSE(cast_to(np.param->value, DType::f32), cast_to(cast_to(r32.read_full(np.name), DType::bf16), DType::f32),
                0.0);
  }
  // Saved again at once: the masters and moments are the f32 run's, bit for bit.
  const std::string ck16 = bf16.save(d.path + "/bf16");
  same_tensors(ck32, ck16);
  CHECK(checkpoint::Reader(ck16).meta().param_dtype == "bf16");
  CHECK(checkpoint::Reader(ck16).meta().optimizer_steps == 2);
  for (float loss : bf16.train(1)) CHECK(std::isfinite(loss));

  // And back: an f32 engine takes the f32 masters as its parameters, unrounded.
  Run back(DType::f32, 9);
  CHECK_THAT(back.resume(ck16), Contains("checkpoint saved in bf16, resumed in f32: its f32 master weights become"));
  checkpoint::Reader r16(ck16);
  for (const auto& np : back.model.named_parameters()) {
    INFO(np.name);
    CHECK_CLOSE(np.param->value, r16.read_full(np.name), 0.0);
  }
}

TEST_CASE("an f16 run resumes bitwise in one process, loss scaler included (ZeRO 0 and 3)", "[checkpoint][precision]") {
  const int stage = GENERATE(0, 3);
  INFO("ZeRO stage " << stage);
  TempDir d;
  Run straight(DType::f16, 4, stage);
  const std::vector<float> first = straight.train(3);
  const auto state = straight.dp->loss_scaler_state();
  REQUIRE(state.has_value());
  CHECK(state->scale == 2048.0f);  // doubled after two good steps, then one more good step
  CHECK(state->good_steps == 1);
  const std::string ck = straight.save(d.path + "/ck");
  const checkpoint::Meta meta = checkpoint::Reader(ck).meta();
  REQUIRE(meta.has_loss_scaler);
  CHECK(meta.param_dtype == "f16");
  CHECK(meta.loss_scaler.scale == state->scale);
  CHECK(meta.loss_scaler.good_steps == state->good_steps);
  CHECK(meta.loss_scaler.skipped_steps == state->skipped_steps);

  Run resumed(DType::f16, 8, stage);
  CHECK(resumed.resume(ck).empty());
  REQUIRE(resumed.dp->loss_scaler_state().has_value());
  CHECK(resumed.dp->loss_scaler_state()->good_steps == 1);
  const std::vector<float> a = straight.train(3), b = resumed.train(3);
  CHECK_CLOSE(b, a, 0.0);
  CHECK(straight.dp->loss_scaler_state()->scale == resumed.dp->loss_scaler_state()->scale);
  const auto pa = straight.params(), pb = resumed.params();
  for (size_t i = 0; i < pa.size(); ++i) CHECK_CLOSE(pb[i], pa[i], 0.0);
  same_tensors(straight.save(d.path + "/a"), resumed.save(d.path + "/b"));
}

TEST_CASE("a damaged bf16 checkpoint loads nothing: flipped byte, truncated shard", "[checkpoint][precision]") {
  TempDir d;
  Run run(DType::bf16, 3);
  run.train(1);
  const std::string ck = run.save(d.path + "/ck");
  const std::string shard = ck + "/rank-00000.safetensors";
  fs::copy_file(shard, d.path + "/good.safetensors");

  Run fresh(DType::bf16, 6);
  const auto before = fresh.params();
  auto unchanged = [&] {
    const auto now = fresh.params();
    for (size_t i = 0; i < now.size(); ++i) CHECK_CLOSE(now[i], before[i], 0.0);
  };
  {
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(shard) - 10));
    f.put('\x55');
  }
  CHECK_THROWS_WITH(fresh.resume(ck), Contains(shard) && Contains("fails its checksum"));
  unchanged();
  fs::copy_file(d.path + "/good.safetensors", shard, fs::copy_options::overwrite_existing);
  fs::resize_file(shard, fs::file_size(shard) - 100);
  CHECK_THROWS_WITH(fresh.resume(ck), Contains(shard) && Contains("truncated"));
  unchanged();
  fs::copy_file(d.path + "/good.safetensors", shard, fs::copy_options::overwrite_existing);
  CHECK(fresh.resume(ck).empty());
}

TEST_CASE("dtypes that do not fit are refused naming both", "[checkpoint][precision]") {
  TempDir d;
  Run run(DType::bf16, 3);
  const std::string ck = run.save(d.path + "/ck");
  const std::string name = run.model.named_parameters()[0].name;
  const Shape shape = run.model.named_parameters()[0].param->shape();

  // Loading into or saving from bf16 tensors directly (no f32 masters).
  checkpoint::Piece low{name, shape, 0, shape_numel(shape), Tensor::zeros({shape_numel(shape)}, DType::bf16)};
  checkpoint::Reader reader(ck);
  CHECK_THROWS_WITH(reader.load({low}), Contains("holds f32 values for '" + name + "'") &&
                                            Contains("the tensor to load into is bf16") && Contains("DataParallel"));
  checkpoint::Meta meta;
  CHECK_THROWS_WITH(checkpoint::save(d.path + "/low", meta, {low}, nullptr),
                    Contains("is bf16") && Contains("DataParallel"));

  // A manifest naming an unknown parameter dtype, or a non-F32 tensor.
  fs::copy(ck, d.path + "/f8");
  edit_manifest(d.path + "/f8", [](nlohmann::json& j) { j["precision"]["param_dtype"] = "f8"; });
  CHECK_THROWS_WITH(checkpoint::Reader(d.path + "/f8"), Contains("precision.param_dtype 'f8' is not f32, bf16 or f16"));
  fs::copy(ck, d.path + "/bf16t");
  edit_manifest(d.path + "/bf16t", [&](nlohmann::json& j) { j["tensors"][name]["dtype"] = "BF16"; });
  CHECK_THROWS_WITH(checkpoint::Reader(d.path + "/bf16t"), Contains("has dtype BF16"));
  fs::copy(ck, d.path + "/scale");
  edit_manifest(d.path + "/scale", [](nlohmann::json& j) {
    j["precision"]["loss_scaler"] = {{"scale", 1024.0}, {"good_steps", 0.5}, {"skipped_steps", 0}};
  });
  CHECK_THROWS_WITH(checkpoint::Reader(d.path + "/scale"), Contains("not an integer"));

  // A manifest from before mixed precision (no "precision" object) reads as f32.
  fs::copy(ck, d.path + "/old");
  edit_manifest(d.path + "/old", [](nlohmann::json& j) { j.erase("precision"); });
  CHECK(checkpoint::Reader(d.path + "/old").meta().param_dtype == "f32");
  Run from_old(DType::bf16, 4);
  CHECK_THAT(from_old.resume(d.path + "/old"), Contains("saved in f32, resumed in bf16"));

  // An f16 checkpoint that lost its loss-scaler state: refused for f16, fine for bf16.
  Run f16(DType::f16, 3);
  const std::string ck16 = f16.save(d.path + "/f16");
  edit_manifest(ck16, [](nlohmann::json& j) { j["precision"].erase("loss_scaler"); });
  Run again(DType::f16, 4);
  CHECK_THROWS_WITH(again.resume(ck16), Contains("saved from an f16 run (param_dtype f16) but holds no loss-scaler "
                                                 "state") &&
                                            Contains("resume with --precision bf16 or f32"));
  Run other(DType::bf16, 4);
  CHECK_THAT(other.resume(ck16),
             Contains("saved in f16, resumed in bf16") && Contains("loss-scaler state is not used"));
}

TEST_CASE("parameters-only loads into bf16 models round; the GPT-2 export of a bf16 run is its f32 masters",
          "[checkpoint][precision]") {
  TempDir d;
  Run run(DType::bf16, 3);
  run.train(2);
  const std::string ck = run.save(d.path + "/ck");
  checkpoint::Reader reader(ck);

  nn::GPT plain(small_gpt(DType::bf16, 16, kVocab, kSeq), Device::cpu(), 12);
  reader.load_parameters(plain);
  for (const auto& np : plain.named_parameters()) {
    INFO(np.name);
    CHECK_CLOSE(np.param->value, cast_to(reader.read_full(np.name), DType::bf16), 0.0);
  }

  const std::string hf = d.path + "/gpt2.safetensors";
  checkpoint::export_hf_gpt2(reader, hf);
  const checkpoint::st::Header h = checkpoint::st::read_header(hf);
  for (const auto& e : h.entries) CHECK(e.dtype == "F32");
  nn::GPT imported(small_gpt(DType::bf16, 16, kVocab, kSeq), Device::cpu(), 13);
  checkpoint::import_hf_gpt2(hf, imported);
  for (size_t i = 0; i < plain.named_parameters().size(); ++i) {
    INFO(plain.named_parameters()[i].name);
    CHECK_CLOSE(imported.named_parameters()[i].param->value, plain.named_parameters()[i].param->value, 0.0);
  }

  // A BF16 file (as PyTorch saves a bf16 model) imports into f32 and bf16 models alike.
  std::vector<checkpoint::st::Entry> entries = h.entries;
  std::vector<Tensor> low;
  {
    checkpoint::io::InFile in(hf);
    for (auto& e : entries) {
      Tensor t = Tensor::empty({static_cast<int64_t>((e.end - e.begin) / 4)}, DType::f32);
      in.read_at(h.data_start + e.begin, t.data_ptr(), t.nbytes());
      low.push_back(cast_to(t, DType::bf16));
      e.dtype = "BF16";
    }
  }
  const std::string header = checkpoint::st::build_header(entries, {{"format", "pt"}});
  {
    std::ofstream out(d.path + "/bf16.safetensors", std::ios::binary);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    for (const Tensor& t : low)
      out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
  }
  nn::GPT from_bf16(small_gpt(DType::bf16, 16, kVocab, kSeq), Device::cpu(), 14);
  checkpoint::import_hf_gpt2(d.path + "/bf16.safetensors", from_bf16);
  nn::GPT wide(small_gpt(DType::f32, 16, kVocab, kSeq), Device::cpu(), 15);
  checkpoint::import_hf_gpt2(d.path + "/bf16.safetensors", wide);
  for (size_t i = 0; i < plain.named_parameters().size(); ++i) {
    INFO(plain.named_parameters()[i].name);
    CHECK_CLOSE(from_bf16.named_parameters()[i].param->value, plain.named_parameters()[i].param->value, 0.0);
    CHECK_CLOSE(wide.named_parameters()[i].param->value, cast_to(plain.named_parameters()[i].param->value, DType::f32),
                0.0);
  }
}
