#include "parallel/layout.h"

#include <algorithm>
#include <map>
#include <set>

namespace dtrain::parallel::detail {

namespace {

int64_t round_up(int64_t n, int64_t m) {
  return (n + m - 1) / m * m;
}

bool is_unit_type(const DataParallelOptions& opt, const nn::Module& m) {
  return std::find(opt.unit_types.begin(), opt.unit_types.end(), m.type_name()) != opt.unit_types.end();
}

// Stages 0-2: buckets in reverse registration order (the order gradients
// become ready), the first one small so communication starts early.
void plan_buckets(const Layout& l, const DataParallelOptions& opt, DType dtype, std::vector<std::vector<int>>& members,
                  std::vector<std::string>& names) {
  const int64_t elem = static_cast<int64_t>(dtype_size(dtype));
  int64_t bytes = 0;
  for (int i = static_cast<int>(l.params.size()) - 1; i >= 0; --i) {
    const int64_t b = l.params[static_cast<size_t>(i)].param->numel() * elem;
    const int64_t cap = members.size() == 1 ? opt.first_bucket_bytes : opt.bucket_bytes;
    if (members.empty() || (bytes > 0 && bytes + b > cap)) {
      members.emplace_back();
      bytes = 0;
    }
    members.back().push_back(i);
    bytes += b;
  }
  for (size_t g = 0; g < members.size(); ++g) names.push_back("bucket " + std::to_string(g));
}

// Stage 3: modules of a wrapped type (outermost wins), then every other
// module that owns parameters directly; in registration order of their
// first parameter.
void plan_units(nn::Module& model, const Layout& l, const DataParallelOptions& opt,
                std::vector<std::vector<int>>& members, std::vector<std::string>& names) {
  std::vector<bool> covered(l.params.size(), false);
  std::vector<std::vector<int>> found;
  std::vector<std::string> found_names;
  for (auto& [name, m] : model.named_modules()) {
    std::vector<int> ids;
    for (auto* p : is_unit_type(opt, *m) ? m->parameters() : m->direct_parameters()) ids.push_back(l.param_id.at(p));
    ids.erase(std::remove_if(ids.begin(), ids.end(), [&](int i) { return covered[static_cast<size_t>(i)]; }),
              ids.end());
    if (ids.empty()) continue;
    for (int i : ids) covered[static_cast<size_t>(i)] = true;
    std::sort(ids.begin(), ids.end());
    found.push_back(ids);
    found_names.push_back(name.empty() ? "model" : name);
  }
  std::vector<size_t> idx(found.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return found[a].front() < found[b].front(); });
  for (size_t i : idx) {
    members.push_back(found[i]);
    names.push_back(found_names[i]);
  }
}

// Modules that read or write a group's storage: owners and tied users (and
// in stage 3 whole units, whose hooks cover the modules inside them).
void plan_module_groups(nn::Module& model, const DataParallelOptions& opt, Layout& l) {
  for (auto& [name, m] : model.named_modules()) {
    const bool is_unit = opt.stage == 3 && is_unit_type(opt, *m);
    bool inside_unit = false;
    if (opt.stage == 3) {
      for (nn::Module* a = m->parent(); a != nullptr; a = a->parent())
        inside_unit = inside_unit || is_unit_type(opt, *a);
    }
    if (inside_unit) continue;
    std::set<int> gs;
    auto group_of = [&](const nn::Parameter* p) { return l.param_group[static_cast<size_t>(l.param_id.at(p))]; };
    if (is_unit) {
      for (auto* p : m->parameters()) gs.insert(group_of(p));
    }
    for (auto* p : m->direct_parameters()) gs.insert(group_of(p));
    for (auto* p : m->shared_parameters()) {
      DTRAIN_CHECK(l.param_id.count(p) != 0, "DataParallel: module '", name,
                   "' uses a shared parameter that is not part of the model");
      gs.insert(group_of(p));
    }
    if (!gs.empty()) l.module_groups.emplace_back(m, std::vector<int>(gs.begin(), gs.end()));
  }
}

}  // namespace

const std::vector<int>* Layout::groups_of(const nn::Module* m) const {
  for (auto& [mod, gs] : module_groups) {
    if (mod == m) return &gs;
  }
  return nullptr;
}

Tensor slot_view(const Tensor& flat, const Slot& slot) {
  return flat.narrow(slot.offset, slot.param->numel()).reshape(slot.param->shape());
}

Layout plan_layout(nn::Module& model, const DataParallelOptions& opt, DType dtype, int rank, int world) {
  Layout l;
  l.params = model.named_parameters();
  DTRAIN_CHECK(!l.params.empty(), "DataParallel: the model has no parameters");
  l.device = l.params.front().param->device();
  for (size_t i = 0; i < l.params.size(); ++i) {
    const auto* p = l.params[i].param;
    DTRAIN_CHECK(p->dtype() == dtype, "DataParallel: parameter '", l.params[i].name, "' is ", dtype_name(p->dtype()),
                 " but the precision policy ", precision_name(opt.precision), " computes in ", dtype_name(dtype),
                 "; build the model in ", dtype_name(dtype),
                 " (GPTConfig::param_dtype and compute_dtype) or use --precision f32");
    DTRAIN_CHECK(p->device() == l.device, "DataParallel: parameter '", l.params[i].name, "' is on ", p->device().str(),
                 " but '", l.params.front().name, "' is on ", l.device.str(), "; keep the model on one device");
    l.param_id[p] = static_cast<int>(i);
  }
  for (auto& [name, m] : model.named_modules()) l.module_name[m] = name.empty() ? "model" : name;

  std::vector<std::vector<int>> members;  // param ids per group, layout order
  std::vector<std::string> names;
  if (opt.stage < 3) {
    plan_buckets(l, opt, dtype, members, names);
  } else {
    plan_units(model, l, opt, members, names);
  }

  l.param_group.assign(l.params.size(), -1);
  l.groups.resize(members.size());
  for (size_t g = 0; g < members.size(); ++g) {
    GroupLayout& G = l.groups[g];
    G.info.name = names[g];
    int64_t off = 0;
    for (int id : members[g]) {
      nn::Parameter* p = l.params[static_cast<size_t>(id)].param;
      G.slots.push_back({p, id, off});
      G.info.params.push_back(l.param_name(id));
      off += p->numel();
      l.param_group[static_cast<size_t>(id)] = static_cast<int>(g);
    }
    G.info.numel = off;
    G.info.padded_numel = round_up(off, world);
    const int64_t chunk = G.info.padded_numel / world;
    G.info.shard_numel = opt.stage == 0 ? G.info.padded_numel : chunk;
    G.info.shard_offset = opt.stage == 0 ? 0 : chunk * rank;
    G.lo = G.info.shard_offset;
    G.len = G.info.shard_numel;
    l.infos.push_back(G.info);
    l.num_parameters += off;
  }
  if (opt.stage >= 1) plan_module_groups(model, opt, l);
  return l;
}

}  // namespace dtrain::parallel::detail
