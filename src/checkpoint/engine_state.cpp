// Checkpoints of a model trained through the data-parallel engine, in any
// precision. The tensors a checkpoint holds are always f32: the optimizer of
// a bf16/f16 run updates the engine's f32 master weights, so those (and the
// f32 moments) are what owned_pieces() saves, and the low-dtype parameters
// are re-derived from them on resume by the same rounding a step does. This
// file adds what the tensors cannot say: the parameter dtype, the f16 loss
// scaler, and what a resume into another precision does.
#include <string>

#include "dtrain/checkpoint.h"
#include "dtrain/error.h"
#include "dtrain/nn/module.h"
#include "dtrain/optim/optimizer.h"
#include "dtrain/parallel/data_parallel.h"

namespace dtrain::checkpoint {

void record_engine_state(const parallel::DataParallel& dp, Meta& meta) {
  meta.param_dtype = parallel::precision_name(dp.options().precision);
  const auto scaler = dp.loss_scaler_state();
  meta.has_loss_scaler = scaler.has_value();
  meta.loss_scaler = scaler.value_or(LossScalerState{});
}

namespace {

// What resuming a `saved` checkpoint into a `run` engine does to precision
// ("" when they agree); throws when it cannot be done.
std::string precision_change(const Reader& reader, const std::string& saved, const std::string& run) {
  const Meta& m = reader.meta();
  if (run == "f16" && saved == "f16") {
    DTRAIN_CHECK(m.has_loss_scaler, "checkpoint ", reader.dir(),
                 " was saved from an f16 run (param_dtype f16) but holds no loss-scaler state, so this f16 run "
                 "cannot continue it exactly; the manifest is damaged or hand-written: resume with --precision "
                 "bf16 or f32 (the f32 masters load either way), or use another checkpoint");
    return "";
  }
  if (saved == run) return "";
  std::string what = "checkpoint saved in " + saved + ", resumed in " + run + ": ";
  if (saved == "f32") {
    what += "its f32 parameters become the f32 master weights and the " + run +
            " parameters are rounded from them (nearest even)";
  } else if (run == "f32") {
    what += "its f32 master weights become the f32 parameters (no rounding)";
  } else {
    what += "its f32 master weights stay the masters and the " + run + " parameters are rounded from them";
  }
  what += "; optimizer moments and step unchanged";
  if (run == "f16") what += "; the f16 loss scaler starts at its initial scale (the checkpoint has none)";
  if (saved == "f16") what += "; the saved f16 loss-scaler state is not used";
  return what;
}

}  // namespace

std::string resume_engine(Reader& reader, const nn::Module& model, optim::Optimizer& optimizer,
                          parallel::DataParallel& dp) {
  const Meta& m = reader.meta();
  const std::string run = parallel::precision_name(dp.options().precision);
  std::string note = precision_change(reader, m.param_dtype, run);
  // The scaler first: it checks the saved state before any tensor is written.
  if (run == "f16" && m.param_dtype == "f16") dp.restore_loss_scaler(m.loss_scaler);
  reader.load(owned_pieces(model, optimizer, dp.rank(), dp.world_size(), /*replicated=*/false));
  dp.parameters_from_masters();
  optimizer.set_steps_done(m.optimizer_steps);
  return note;
}

}  // namespace dtrain::checkpoint
