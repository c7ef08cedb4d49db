// Export to the Hugging Face GPT-2 layout, read back by an independent reader
// (the safetensors header parsed here with nlohmann-json, bytes read with
// std::ifstream), and import into a fresh model: bitwise the same weights.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "check_close.h"
#include "dtrain/checkpoint.h"
#include "dtrain/nn/gpt.h"
#include "dtrain/optim/adamw.h"

using namespace dtrain;
namespace fs = std::filesystem;

namespace {
nn::GPTConfig tiny() {
  nn::GPTConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 16;
  c.vocab_size = 40;
  c.max_seq_len = 8;
  return c;
}

// An independent safetensors reader: name -> (shape, f32 values).
std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>> read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  std::string text(n, '\0');
  in.read(text.data(), static_cast<std::streamsize>(n));
  const auto header = nlohmann::json::parse(text);
  std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>> out;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    REQUIRE(it.value()["dtype"] == "F32");
    const uint64_t b = it.value()["data_offsets"][0], e = it.value()["data_offsets"][1];
    std::vector<float> v((e - b) / 4);
    in.seekg(static_cast<std::streamoff>(8 + n + b));
    in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(e - b));
    out[it.key()] = {it.value()["shape"].get<std::vector<int64_t>>(), v};
  }
  return out;
}
}  // namespace

TEST_CASE("export to the Hugging Face GPT-2 layout reads back independently and imports bitwise", "[checkpoint]") {
  char t[] = "/tmp/dtrain_ckpt_hf_XXXXXX";
  REQUIRE(::mkdtemp(t) != nullptr);
  const std::string dir = t;
  nn::GPT model(tiny(), Device::cpu(), 11);
  optim::AdamW opt(optim::param_groups(model, 0.1f));
  opt.init_state();
  checkpoint::Meta meta;
  const std::string ck = checkpoint::save(dir, meta, checkpoint::owned_pieces(model, opt, 0, 1, true), nullptr);
  checkpoint::Reader reader(ck);
  const std::string out = dir + "/gpt2.safetensors";
  checkpoint::export_hf_gpt2(reader, out);

  const auto file = read_safetensors(out);
  CHECK(file.size() == model.named_parameters().size());  // no optimizer state
  const auto& qkv = file.at("transformer.h.1.attn.c_attn.weight");
  CHECK(qkv.first == std::vector<int64_t>{16, 48});  // Conv1D: [in, out]
  Tensor w = model.named_parameters()[0].param->value;
  for (const auto& np : model.named_parameters()) {
    if (np.name == "blocks.1.attn.qkv.weight") w = np.param->value;
  }
  for (int64_t i = 0; i < 48; ++i) {
    for (int64_t j = 0; j < 16; ++j) {
      REQUIRE(qkv.second[static_cast<size_t>(j * 48 + i)] == w.data<float>()[i * 16 + j]);
    }
  }
  const auto& wte = file.at("transformer.wte.weight");
  CHECK(wte.first == std::vector<int64_t>{40, 16});
  CHECK(file.count("transformer.ln_f.bias") == 1);

  nn::GPT fresh(tiny(), Device::cpu(), 99);
  checkpoint::import_hf_gpt2(out, fresh);
  const auto a = model.named_parameters(), b = fresh.named_parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].name);
    CHECK_CLOSE(b[i].param->value, a[i].param->value, 0.0);
  }
  nn::GPTConfig wider = tiny();
  wider.n_embd = 32;
  nn::GPT other(wider, Device::cpu(), 1);
  try {
    checkpoint::import_hf_gpt2(out, other);
    FAIL("import into a different shape should throw");
  } catch (const Error& e) {
    CHECK_THAT(std::string(e.what()), Catch::Matchers::Contains(out) && Catch::Matchers::Contains("shape"));
  }
  fs::remove_all(dir);
}
