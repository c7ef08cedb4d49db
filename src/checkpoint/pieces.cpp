// Which pieces of which tensors a rank owns, from its optimizer's parameter
// references: whole parameters ("name") or the engine's shard slices
// ("name[a:b]", element range of the flattened parameter). The optimizer
// state follows its parameter ("name[a:b].exp_avg" -> piece of
// "name.exp_avg" over the same range).
#include <map>

#include "dtrain/checkpoint.h"
#include "dtrain/error.h"
#include "dtrain/nn/module.h"
#include "dtrain/optim/optimizer.h"

namespace dtrain::checkpoint {

namespace {
struct Slice {
  std::string base;
  int64_t begin = 0, end = -1;  // end -1: the whole parameter
};

Slice parse_ref_name(const std::string& name) {
  Slice s{name};
  const auto open = name.rfind('[');
  if (open == std::string::npos || name.back() != ']') return s;
  const auto colon = name.find(':', open);
  DTRAIN_CHECK(colon != std::string::npos, "checkpoint: cannot parse the parameter slice name '", name, "'");
  s.base = name.substr(0, open);
  s.begin = std::stoll(name.substr(open + 1, colon - open - 1));
  s.end = std::stoll(name.substr(colon + 1, name.size() - colon - 2));
  return s;
}
}  // namespace

std::vector<Piece> owned_pieces(const nn::Module& model, optim::Optimizer& optimizer, int rank, int world,
                                bool replicated) {
  std::map<std::string, Shape> shapes;
  for (const auto& np : model.named_parameters()) shapes[np.name] = np.param->shape();
  std::map<std::string, Tensor> state;
  for (auto& [name, t] : optimizer.state()) state[name] = t;

  std::vector<Piece> out;
  auto add = [&](const std::string& name, const Shape& shape, int64_t begin, int64_t end, const Tensor& live) {
    Tensor flat = live.reshape({live.numel()});
    int64_t b = begin, e = end;
    if (replicated) {  // every rank holds it all: rank r writes its 1/world split
      const int64_t n = end - begin;
      b = begin + n * rank / world;
      e = begin + n * (rank + 1) / world;
    }
    if (e <= b) return;
    out.push_back({name, shape, b, e, flat.narrow(b - begin, e - b)});
  };
  for (auto& group : optimizer.groups()) {
    for (auto& ref : group.params) {
      const Slice s = parse_ref_name(ref.name);
      auto it = shapes.find(s.base);
      DTRAIN_CHECK(it != shapes.end(), "checkpoint: the optimizer updates '", ref.name,
                   "', which is not a parameter of the model");
      const int64_t begin = s.end < 0 ? 0 : s.begin;
      const int64_t end = s.end < 0 ? shape_numel(it->second) : s.end;
      DTRAIN_CHECK(ref.value.numel() == end - begin, "checkpoint: parameter slice '", ref.name, "' has ",
                   ref.value.numel(), " elements, expected ", end - begin);
      add(s.base, it->second, begin, end, ref.value);
      for (const char* suffix : {".exp_avg", ".exp_avg_sq", ".momentum"}) {
        auto st = state.find(ref.name + suffix);
        if (st != state.end()) add(s.base + suffix, it->second, begin, end, st->second);
      }
    }
  }
  return out;
}

}  // namespace dtrain::checkpoint
