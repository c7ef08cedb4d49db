// Parameter: one named, trainable tensor of a module (value + gradient).
//
// Modules read `value` and `grad` through the Parameter every time they run and
// never keep copies of the handles, so whoever owns the training step may
// rebind both to other storage (for example views into one flat bucket, see
// rebind()) between steps, and the next forward/backward uses the new storage.
#pragma once

#include <string>

#include "dtrain/tensor.h"

namespace dtrain::nn {

class Parameter {
 public:
  Parameter(std::string name, Tensor value, bool weight_decay);
  // A parameter without storage yet (a model built under DeferredInit): the
  // data-parallel engine gives it storage and fills it later.
  Parameter(std::string name, Shape shape, DType dtype, Device device, bool weight_decay);

  // Local name inside the owning module ("weight"); Module::named_parameters
  // gives the dotted path from the root ("blocks.0.attn.qkv.weight").
  const std::string& name() const { return name_; }
  // Shape, dtype and device are fixed at construction, so they stay known
  // while `value` is released (ZeRO-3 keeps only a shard between uses).
  const Shape& shape() const { return shape_; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  int64_t numel() const { return shape_numel(shape_); }
  // AdamW applies decoupled weight decay only where this is true
  // (2-D weight matrices and embeddings; not biases or LayerNorm gains).
  bool weight_decay() const { return weight_decay_; }

  // Points value (and grad, when given) at new storage, e.g. views of a flat
  // buffer: `flat.narrow(offset, numel).reshape(shape)`. The new tensors must
  // match shape, dtype and device. With copy_contents the current value/grad
  // are copied into the new storage first (the usual case when moving a
  // parameter into a bucket); without it the caller fills them.
  void rebind(const Tensor& new_value, const Tensor& new_grad, bool copy_contents = true);
  void rebind_value(const Tensor& new_value, bool copy_contents = true);
  void rebind_grad(const Tensor& new_grad, bool copy_contents = true);

  // value/grad are public handles: modules read them, engines may also
  // release them (assign Tensor()) between uses; a module that runs with an
  // undefined value throws a clear error (require_value()).
  Tensor value;
  Tensor grad;

  // Throws unless `value` (resp. `grad`) is defined and has this parameter's shape.
  const Tensor& require_value() const;
  Tensor& require_grad();

 private:
  void check_compatible(const Tensor& t, const char* what) const;

  std::string name_;
  Shape shape_;
  DType dtype_;
  Device device_;
  bool weight_decay_;
};

}  // namespace dtrain::nn
