// Layout: how the data-parallel engine packs a model's parameters into flat
// groups -- buckets in the order gradients become ready (stages 0-2), one
// unit per wrapped module (stage 3) -- pads each group to a multiple of the
// world size and picks this rank's chunk. Planning only: nothing here
// allocates a tensor.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dtrain/nn/module.h"
#include "dtrain/parallel/data_parallel.h"

namespace dtrain::parallel::detail {

struct Slot {
  nn::Parameter* param;
  int param_id;    // index in the registration-order parameter list
  int64_t offset;  // in the group's flat buffer
};

struct GroupLayout {
  GroupInfo info;
  std::vector<Slot> slots;
  // Range this rank updates: the whole group in stage 0, chunk `rank` otherwise.
  int64_t lo = 0, len = 0;
};

struct Layout {
  std::vector<nn::NamedParameter> params;  // registration order
  std::unordered_map<const nn::Parameter*, int> param_id;
  std::vector<int> param_group;  // param id -> group index
  std::vector<GroupLayout> groups;
  std::vector<GroupInfo> infos;  // the plan as DataParallel::groups() shows it
  // Modules and the groups whose storage they read or write (stages 1-3):
  // owners, tied users and, in stage 3, whole units.
  std::vector<std::pair<nn::Module*, std::vector<int>>> module_groups;
  std::unordered_map<const nn::Module*, std::string> module_name;
  Device device;
  int64_t num_parameters = 0;

  const std::vector<int>* groups_of(const nn::Module* m) const;
  const std::string& param_name(int id) const { return params[static_cast<size_t>(id)].name; }
};

// Plans the groups of `model` for `opt.stage` at this rank. Every parameter
// must be of `dtype` (the precision policy's) and on one device.
Layout plan_layout(nn::Module& model, const DataParallelOptions& opt, DType dtype, int rank, int world);

// The parameter's view of a group's flat buffer.
Tensor slot_view(const Tensor& flat, const Slot& slot);

}  // namespace dtrain::parallel::detail
