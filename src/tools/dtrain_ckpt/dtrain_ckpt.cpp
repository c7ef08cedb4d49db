// dtrain-ckpt: the command-line view of a checkpoint.
//
//   dtrain-ckpt info   CKPT              manifest summary (step, layout, model, data position, tensors, files)
//   dtrain-ckpt verify CKPT              every file's size and checksum (and authenticity when encrypted)
//   dtrain-ckpt export CKPT OUT          one Hugging Face GPT-2 safetensors file of the model
//   dtrain-ckpt keygen                   a fresh 256-bit key (64 hex digits) for encryption at rest
//
// CKPT is a checkpoint directory or a root holding several (the newest complete
// one is used). Encrypted checkpoints need --key-file or DTRAIN_CHECKPOINT_KEY.
// Exit status: 0 fine, 1 a problem (printed), 2 bad usage.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>

#include "dtrain/checkpoint.h"

using namespace dtrain;
namespace fs = std::filesystem;

namespace {
std::string resolve(const std::string& path) {
  if (fs::exists(fs::path(path) / "manifest.json")) return path;
  const std::string latest = checkpoint::find_latest(path);
  DTRAIN_CHECK(!latest.empty(), path, " is neither a checkpoint (no manifest.json) nor a directory holding one");
  return latest;
}

void info(checkpoint::Reader& r) {
  const auto& m = r.meta();
  std::printf("checkpoint %s\n", r.dir().c_str());
  std::printf("  step %lld, saved by %d rank(s) at ZeRO stage %d\n", static_cast<long long>(m.step), m.world_size,
              m.zero_stage);
  std::printf("  precision: %s parameters, tensors stored f32%s", m.param_dtype.c_str(),
              m.param_dtype == "f32" ? "" : " (the master weights)");
  if (m.has_loss_scaler) {
    std::printf("; f16 loss scale %g, %lld good steps, %lld skipped", static_cast<double>(m.loss_scaler.scale),
                static_cast<long long>(m.loss_scaler.good_steps), static_cast<long long>(m.loss_scaler.skipped_steps));
  }
  std::printf("\n  model:");
  for (const auto& [k, v] : m.model) std::printf(" %s=%lld", k.c_str(), static_cast<long long>(v));
  std::printf("\n  optimizer: %s, %lld steps;", m.optimizer.c_str(), static_cast<long long>(m.optimizer_steps));
  for (const auto& [k, v] : m.hyper) std::printf(" %s=%g", k.c_str(), v);
  std::printf("\n  data position: epoch %lld, shard %lld, offset %lld; seed %llu; schedule step %lld\n",
              static_cast<long long>(m.data.epoch), static_cast<long long>(m.data.shard),
              static_cast<long long>(m.data.offset), static_cast<unsigned long long>(m.seed),
              static_cast<long long>(m.schedule_step));
  int64_t elements = 0;
  const auto names = r.tensor_names();
  for (const auto& n : names) elements += shape_numel(r.shape(n));
  std::printf("  %zu tensors, %lld elements (f32)\n", names.size(), static_cast<long long>(elements));
  for (const auto& n : names) std::printf("    %-40s %s\n", n.c_str(), shape_str(r.shape(n)).c_str());
  std::printf("  %zu file(s):", r.files().size());
  for (const auto& f : r.files()) std::printf(" %s", f.c_str());
  std::printf("\n");
}
}  // namespace

int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  CLI::App app{"dtrain-ckpt: inspect, verify and export dtrain checkpoints"};
  app.require_subcommand(1);
  std::string path, out, key_file;
  auto* cinfo = app.add_subcommand("info", "print a checkpoint's manifest");
  auto* cverify = app.add_subcommand("verify", "check every file's checksum (and authenticity with the key)");
  auto* cexport = app.add_subcommand("export", "write the model as one Hugging Face GPT-2 safetensors file");
  app.add_subcommand("keygen", "print a fresh random 256-bit key (64 hex digits)");
  for (auto* c : {cinfo, cverify, cexport}) {
    c->add_option("checkpoint", path, "checkpoint directory, or a root holding several")->required();
    c->add_option("--key-file", key_file, "key of an encrypted checkpoint (default: DTRAIN_CHECKPOINT_KEY)");
  }
  cexport->add_option("out", out, "output .safetensors file")->required();
  CLI11_PARSE(app, argc, argv);
  try {
    if (app.got_subcommand("keygen")) {
      std::printf("%s\n", checkpoint::EncryptionKey::generate_hex().c_str());
      return 0;
    }
    checkpoint::Reader r(resolve(path), checkpoint::EncryptionKey::from_file_or_env(key_file));
    if (cinfo->parsed()) info(r);
    if (cverify->parsed()) {
      r.verify_all();
      std::printf("%s: %zu file(s) verified, manifest consistent\n", r.dir().c_str(), r.files().size());
    }
    if (cexport->parsed()) {
      checkpoint::export_hf_gpt2(r, out);
      std::printf("wrote %s (Hugging Face GPT-2 layout, f32)\n", out.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dtrain-ckpt: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
