// Export to and import from the Hugging Face GPT-2 safetensors layout, so a
// user's existing tools read dtrain's weights and dtrain can start from
// pretrained ones. Names map one to one; Conv1D matrices are transposed.
#include <cstdio>
#include <filesystem>

#include "checkpoint/file_io.h"
#include "checkpoint/safetensors.h"
#include "dtrain/checkpoint.h"
#include "dtrain/error.h"
#include "dtrain/nn/module.h"
#include "dtrain/ops.h"

namespace fs = std::filesystem;

namespace dtrain::checkpoint {

namespace {
Tensor transpose2d(const Tensor& t) {
  const int64_t r = t.shape()[0], c = t.shape()[1];
  Tensor out = Tensor::empty({c, r}, DType::f32);
  const float* src = t.data<float>();
  float* dst = out.data<float>();
  for (int64_t i = 0; i < r; ++i) {
    for (int64_t j = 0; j < c; ++j) dst[j * r + i] = src[i * c + j];
  }
  return out;
}

// t (CPU) in `dtype`: t itself when it already is, else a cast copy.
Tensor converted(const Tensor& t, DType dtype) {
  if (t.dtype() == dtype) return t;
  Tensor out = Tensor::empty(t.shape(), dtype);
  ops::cast(out, t);
  return out;
}
}  // namespace

std::pair<std::string, bool> hf_gpt2_name(const std::string& n) {
  if (n == "embed.wte") return {"transformer.wte.weight", false};
  if (n == "embed.wpe") return {"transformer.wpe.weight", false};
  if (n == "ln_f.weight" || n == "ln_f.bias") return {"transformer." + n, false};
  // "blocks.<i>.<part>.<weight|bias>", parsed by hand (std::regex trips
  // GCC 12's maybe-uninitialized warning under -O2 with sanitizers).
  static const std::map<std::string, std::string> part = {
      {"ln1", "ln_1"},        {"ln2", "ln_2"},           {"attn.qkv", "attn.c_attn"}, {"attn.proj", "attn.c_proj"},
      {"mlp.fc", "mlp.c_fc"}, {"mlp.proj", "mlp.c_proj"}};
  const std::string prefix = "blocks.";
  const size_t digits_end = n.find('.', prefix.size());
  const size_t kind_dot = n.rfind('.');
  const bool has_index = n.compare(0, prefix.size(), prefix) == 0 && digits_end != std::string::npos &&
                         digits_end > prefix.size() && digits_end < kind_dot &&
                         n.find_first_not_of("0123456789", prefix.size()) == digits_end;
  const std::string index = has_index ? n.substr(prefix.size(), digits_end - prefix.size()) : "";
  const std::string middle = has_index ? n.substr(digits_end + 1, kind_dot - digits_end - 1) : "";
  const std::string kind = has_index ? n.substr(kind_dot + 1) : "";
  DTRAIN_CHECK(has_index && part.count(middle) != 0 && (kind == "weight" || kind == "bias"), "'", n,
               "' is not a GPT-2 parameter; export/import need a GPT model");
  const bool matrix = kind == "weight" && middle != "ln1" && middle != "ln2";
  return {"transformer.h." + index + "." + part.at(middle) + "." + kind, matrix};
}

void export_hf_gpt2(Reader& reader, const std::string& out_path) {
  std::vector<std::pair<std::string, Tensor>> out;
  std::vector<st::Entry> entries;
  for (const auto& name : reader.tensor_names()) {
    if (name.find(".exp_avg") != std::string::npos || name.find(".momentum") != std::string::npos) continue;
    const auto [hf, transposed] = hf_gpt2_name(name);
    Tensor t = reader.read_full(name);
    if (transposed) t = transpose2d(t);
    entries.push_back({hf, "F32", t.shape(), 0, 0});
    out.emplace_back(hf, t);
  }
  const std::string header = st::build_header(entries, {{"format", "pt"}});
  const std::string tmp = out_path + ".tmp";
  fs::remove(tmp);
  {
    io::OutFile f(tmp);
    f.write(header.data(), header.size());
    for (const auto& [name, t] : out) f.write(t.data_ptr(), t.nbytes());
    f.finish();
  }
  fs::rename(tmp, out_path);
  const fs::path parent = fs::absolute(out_path).parent_path();
  io::fsync_dir(parent.string());
}

void import_hf_gpt2(const std::string& path, const nn::Module& model) {
  const st::Header h = st::read_header(path);
  io::InFile f(path);
  std::vector<std::pair<Tensor, Tensor>> todo;  // (parameter, value): read everything before writing
  for (const auto& np : model.named_parameters()) {
    const auto [hf, transposed] = hf_gpt2_name(np.name);
    const st::Entry* e = h.find(hf);
    if (e == nullptr) e = h.find(hf.substr(std::string("transformer.").size()));
    DTRAIN_CHECK(e != nullptr, "GPT-2 file ", path, " has no tensor '", hf, "' for parameter ", np.name);
    const DType stored = e->dtype == "F32" ? DType::f32 : e->dtype == "BF16" ? DType::bf16 : DType::f16;
    DTRAIN_CHECK(e->dtype == "F32" || e->dtype == "BF16" || e->dtype == "F16", "GPT-2 file ", path, ": tensor '",
                 e->name, "' is ", e->dtype, "; only F32, BF16 and F16 files can be imported");
    Shape want = np.param->shape();
    if (transposed) want = {want[1], want[0]};
    DTRAIN_CHECK(Shape(e->shape.begin(), e->shape.end()) == want, "GPT-2 file ", path, ": tensor '", e->name,
                 "' has shape ", shape_str(Shape(e->shape.begin(), e->shape.end())), " but the model needs ",
                 shape_str(want), " (pass the matching model options)");
    Tensor raw = Tensor::empty(want, stored);
    DTRAIN_CHECK(e->end - e->begin == raw.nbytes(), "GPT-2 file ", path, ": tensor '", e->name, "' holds ",
                 e->end - e->begin, " bytes, its dtype and shape need ", raw.nbytes());
    f.read_at(h.data_start + e->begin, raw.data_ptr(), raw.nbytes());
    Tensor t = converted(raw, DType::f32);
    if (transposed) t = transpose2d(t);
    todo.emplace_back(np.param->value, t);
  }
  for (auto& [v, t] : todo) {
    DTRAIN_CHECK(v.defined() && is_floating(v.dtype()),
                 "import_hf_gpt2: import into the model before a data-parallel engine wraps it");
    const Tensor value = converted(t, v.dtype());  // bf16/f16 models: rounded to nearest even
    v.copy_(v.is_cpu() ? value : value.to(v.device()));
  }
}

}  // namespace dtrain::checkpoint
