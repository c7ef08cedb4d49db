// Sharded checkpoints: a directory per save, loadable at any world size and
// any ZeRO stage.
//
//   root/
//     latest                     name of the newest complete checkpoint (updated last)
//     step-00000020/
//       manifest.json            Meta below, every tensor's global name / shape /
//                                dtype and which element range each file holds,
//                                a BLAKE2b checksum and size per file
//       rank-00000.safetensors   rank 0's pieces (1-D f32, keyed by global name)
//       rank-00001.safetensors   ...
//     .tmp-step-00000030/        a save in progress (or interrupted): ignored
//
// The unit of storage is a *piece*: a contiguous element range [begin, end) of
// one tensor flattened in row-major order. A rank saves the pieces it owns
// (its ZeRO shard; in stage 0 an even split of every tensor, so nothing is
// written twice) and loads whatever pieces its own layout needs, reading only
// the overlapping byte ranges of the files that hold them. Because pieces are
// defined on the flattened global tensor, the saving and loading layouts are
// independent: that is resharding.
//
// Saving is atomic: every rank writes and fsyncs its file inside
// root/.tmp-step-N, all ranks meet at a barrier, rank 0 writes the manifest,
// renames the directory into place, fsyncs, and only then replaces `latest`.
// A crash at any point leaves the previous checkpoint intact and loadable.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dtrain/data/data_loader.h"
#include "dtrain/optim/loss_scaler.h"
#include "dtrain/tensor.h"

namespace dtrain::comm {
class Communicator;
}
namespace dtrain::nn {
class Module;
}
namespace dtrain::optim {
class Optimizer;
}
namespace dtrain::parallel {
class DataParallel;
}

namespace dtrain::checkpoint {

// Everything a resumed job needs besides the tensors.
struct Meta {
  int64_t step = 0;  // optimizer steps completed when saved
  int world_size = 1;
  int zero_stage = 0;
  std::map<std::string, int64_t> model;  // model config (GPTConfig fields)
  std::string optimizer = "adamw";
  std::map<std::string, double> hyper;  // optimizer / schedule hyper-parameters (lr, weight_decay, ...)
  int64_t optimizer_steps = 0;          // the optimizer's step counter (AdamW bias correction)
  int64_t schedule_step = 0;            // the next step index the LR schedule is asked for
  data::LoaderPosition data;            // global position: valid at any world size
  uint64_t seed = 0;
  std::string rng;  // text state of the job's RNG engine (empty: none)
  // The dtype the model's parameters had ("f32", "bf16" or "f16"; "f32" in
  // checkpoints written before mixed precision). The tensors are f32 whatever
  // it is: under bf16/f16 they are the engine's f32 master weights, from
  // which the parameters are rounded.
  std::string param_dtype = "f32";
  // f16 runs: the dynamic loss scaler, so a resumed run scales as the
  // uninterrupted one would (has_loss_scaler false for f32 and bf16).
  bool has_loss_scaler = false;
  LossScalerState loss_scaler;
};

// A 256-bit key for encryption at rest (XChaCha20-Poly1305). Held only in
// memory (wiped when destroyed); dtrain never writes it anywhere.
class EncryptionKey {
 public:
  static constexpr size_t kBytes = 32;
  // 64 hex digits (surrounding whitespace ignored); `where` names the source in errors.
  static std::shared_ptr<const EncryptionKey> from_hex(const std::string& hex, const std::string& where);
  // From key_file when given (64 hex digits, or exactly 32 raw bytes), else
  // from DTRAIN_CHECKPOINT_KEY (64 hex digits), else null: no encryption.
  static std::shared_ptr<const EncryptionKey> from_file_or_env(const std::string& key_file);
  // A fresh random key as 64 hex digits (for `dtrain-ckpt keygen`).
  static std::string generate_hex();
  explicit EncryptionKey(const unsigned char* bytes);
  ~EncryptionKey();
  EncryptionKey(const EncryptionKey&) = delete;
  EncryptionKey& operator=(const EncryptionKey&) = delete;
  const unsigned char* data() const { return bytes_; }

 private:
  unsigned char bytes_[kBytes];
};
using KeyPtr = std::shared_ptr<const EncryptionKey>;

// A contiguous element range of one tensor, flattened. `data` is an f32 CPU
// tensor of end - begin elements (or a live buffer on any device to load into).
struct Piece {
  std::string name;  // global tensor name ("h.0.attn.c_attn.weight", "...exp_avg")
  Shape shape;       // the whole tensor's shape
  int64_t begin = 0, end = 0;
  Tensor data;
};

// The pieces this rank owns of the model parameters (f32 master weights) and
// of the optimizer state ("<param>.exp_avg", ...), from the optimizer's
// parameter references (whole parameters or "name[a:b]" shard slices, as
// DataParallel::param_groups names them). `replicated`: every rank holds the
// same full tensors (ZeRO stage 0, or a single process): each rank then takes
// its 1/world split of every tensor. The tensors are live views (not copies).
std::vector<Piece> owned_pieces(const nn::Module& model, optim::Optimizer& optimizer, int rank, int world,
                                bool replicated);

struct SaveOptions {
  int keep_last = 0;  // > 0: delete all but the newest keep_last complete checkpoints
  KeyPtr key;         // set: every file (manifest included) encrypted and authenticated
};

// Collective over `comm` (null: a single process). Writes root/step-<meta.step>
// and returns its path. Throws dtrain::Error (on every rank) if a write fails
// on any rank; nothing visible is left half-written.
std::string save(const std::string& root, const Meta& meta, const std::vector<Piece>& pieces, comm::Communicator* comm,
                 const SaveOptions& options = {});

// A save that overlaps training. The constructor (collective) creates the
// temporary directory, copies this rank's pieces to host memory and starts
// writing its file on a background thread, then returns: training may change
// the live tensors. finish() (collective: every rank calls it at the same
// point of the program) waits for the write and publishes the checkpoint.
// Destroyed unfinished, it waits for the thread and leaves the save
// unpublished (ignored as incomplete). Only the owner thread communicates.
class PendingSave {
 public:
  PendingSave(const std::string& root, const Meta& meta, const std::vector<Piece>& pieces, comm::Communicator* comm,
              const SaveOptions& options = {}, bool background = true);
  ~PendingSave();
  PendingSave(const PendingSave&) = delete;
  PendingSave& operator=(const PendingSave&) = delete;
  // The checkpoint's path once published.
  std::string finish();
  bool finished() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// The newest complete checkpoint under root ("" when there is none). Prints a
// warning to stderr for each incomplete one it skips.
std::string find_latest(const std::string& root);

// A checkpoint directory opened for reading: the manifest parsed and checked
// (every file it names exists). An encrypted checkpoint needs its key; with a
// key, an unencrypted checkpoint is refused (it could have been swapped in).
class Reader {
 public:
  explicit Reader(const std::string& dir, KeyPtr key = nullptr);
  ~Reader();
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  const Meta& meta() const;
  const std::string& dir() const { return dir_; }
  std::vector<std::string> tensor_names() const;
  Shape shape(const std::string& name) const;
  std::vector<std::string> files() const;

  // Recomputes a file's checksum; throws naming the file on a mismatch.
  void verify(const std::string& file) const;
  void verify_all() const;

  // Elements [begin, end) of tensor `name` into out (f32 CPU, end - begin
  // elements), reading only the byte ranges that overlap. Every file read is
  // verified against its checksum first (once per Reader).
  void read(const std::string& name, int64_t begin, int64_t end, Tensor& out);
  Tensor read_full(const std::string& name);

  // Fills every piece's data (any device) from the checkpoint. Every file
  // involved is verified (checksum, and authenticity when encrypted) before
  // the first piece is written: a damaged checkpoint loads nothing.
  void load(const std::vector<Piece>& pieces);
  // Writes every model parameter whose value is held whole in full: with a
  // data-parallel engine in stages 1-2 every rank keeps all values, so each
  // reads them all (stage 3 keeps only the shard: skipped). bf16/f16
  // parameters get the stored f32 values rounded to nearest even, as the
  // engine rounds its masters (the masters themselves come from load()).
  void load_parameters(const nn::Module& model);

  struct Impl;

 private:
  std::string dir_;
  KeyPtr key_;
  std::unique_ptr<Impl> impl_;
};

// Mixed precision with a data-parallel engine (src/checkpoint/engine_state.cpp).
//
// record_engine_state: the engine's precision into meta (param_dtype, and the
// loss scaler under f16). Save the pieces owned_pieces() gives for
// dp.param_groups' optimizer: they are the f32 masters and moments.
void record_engine_state(const parallel::DataParallel& dp, Meta& meta);

// Resumes a model wrapped by `dp` (collective): this rank's pieces of the
// master weights and optimizer state loaded, the parameters derived from the
// masters (rounded under bf16/f16; all-gathered in stages 1-2), the
// optimizer's step counter and, f16 to f16, the loss scaler restored.
// Precision changes are allowed and returned as a sentence ("" when none):
//   f32 -> bf16/f16   the f32 values become the masters, parameters rounded
//   bf16/f16 -> f32   the f32 masters become the parameters (no rounding)
//   bf16 <-> f16, f32 -> f16   as above; the f16 loss scaler starts at its
//                     initial scale; leaving f16, its saved state is unused
// An f16 checkpoint without loss-scaler state cannot resume an f16 run
// (dtrain::Error naming both dtypes and what to do).
std::string resume_engine(Reader& reader, const nn::Module& model, optim::Optimizer& optimizer,
                          parallel::DataParallel& dp);

// Hugging Face GPT-2 interchange: one safetensors file of the full model, f32
// (the checkpoint's values; for a bf16/f16 run the f32 master weights, which
// round to its parameters exactly),
// names "transformer.h.0.attn.c_attn.weight", ..., Conv1D weights stored
// [in, out] (transposed from dtrain's Linear [out, in]); the LM head is tied
// to transformer.wte.weight. export writes aside and renames (never a partial
// file); import accepts names with or without the "transformer." prefix (as
// the Hub's gpt2 model.safetensors has them) and fills the model's
// parameters (before a data-parallel engine wraps it; bf16/f16 parameters get
// the F32, BF16 or F16 values converted, rounded to nearest even).
void export_hf_gpt2(Reader& reader, const std::string& out_path);
void import_hf_gpt2(const std::string& path, const nn::Module& model);
// The Hugging Face name of a dtrain GPT parameter and whether its matrix is
// stored transposed there; throws for names outside the GPT family.
std::pair<std::string, bool> hf_gpt2_name(const std::string& dtrain_name);

}  // namespace dtrain::checkpoint
