// bench_checkpoint: how fast dtrain saves and loads a sharded checkpoint
// compared with what the disk does for plain sequential writes and reads of
// the same number of bytes, measured in the same run. One process per rank:
//
//   dtrain-run --nproc-per-node 2 bench_checkpoint --preset gpt2-124m --zero 1 --dir /tmp/bench_ckpt
//
// Per rank: the model under the data-parallel engine with AdamW state, so the
// checkpoint holds master weights and both moments (3 x 4 bytes per
// parameter over all ranks). Every phase runs between barriers; GB/s is the
// bytes of all ranks over the slowest rank's time. Page-cache pages of every
// file are dropped (fsync, then POSIX_FADV_DONTNEED) before it is read, so
// reads come from the disk, not from memory. Rank 0 prints one line per
// phase and, with --metrics-out, one JSON object for the run.
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "dtrain/checkpoint.h"
#include "dtrain/comm/init.h"
#include "dtrain/nn/gpt.h"
#include "dtrain/optim/adamw.h"
#include "dtrain/parallel/data_parallel.h"

using namespace dtrain;
namespace fs = std::filesystem;

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void drop_cache(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

void drop_cache_dir(const std::string& dir) {
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) drop_cache(e.path().string());
  }
}

void raw_write(const std::string& path, uint64_t bytes) {
  std::vector<char> buf(4 << 20, 'x');
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  DTRAIN_CHECK(fd >= 0, "cannot create ", path);
  for (uint64_t done = 0; done < bytes;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), bytes - done));
    DTRAIN_CHECK(::write(fd, buf.data(), n) == static_cast<ssize_t>(n), "write to ", path, " failed");
    done += n;
  }
  ::fsync(fd);
  ::close(fd);
}

void raw_read(const std::string& path) {
  std::vector<char> buf(4 << 20);
  const int fd = ::open(path.c_str(), O_RDONLY);
  DTRAIN_CHECK(fd >= 0, "cannot open ", path);
  while (::read(fd, buf.data(), buf.size()) > 0) {
  }
  ::close(fd);
}
}  // namespace

int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  CLI::App app{"bench_checkpoint: checkpoint save/load throughput vs raw disk bandwidth"};
  std::string preset = "gpt2-124m", dir = "/tmp/dtrain_bench_ckpt", metrics_out, precision = "f32";
  int zero = 1;
  app.add_option("--preset", preset, "model preset")->capture_default_str();
  app.add_option("--zero", zero, "ZeRO stage of the saving job")->capture_default_str();
  app.add_option("--dir", dir, "scratch directory on the disk to measure (removed after)")->capture_default_str();
  app.add_option("--metrics-out", metrics_out, "write the results as one JSON object to this file");
  app.add_option("--precision", precision, "f32, bf16 or f16 model (f32 masters and moments are saved either way)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    auto comm = comm::init_process_group();
    const int rank = comm->rank(), world = comm->size();
    auto barrier = [&] { comm->barrier().wait(); };
    // The slowest rank's seconds for fn (every rank runs it between barriers).
    auto timed = [&](const auto& fn) {
      barrier();
      const double t0 = now_s();
      fn();
      barrier();
      return now_s() - t0;
    };
    if (rank == 0) {
      fs::remove_all(dir);
      fs::create_directories(dir);
    }
    barrier();
    nn::GPTConfig config = nn::GPTConfig::preset(preset);
    config.param_dtype = config.compute_dtype = parallel::precision_dtype(parallel::parse_precision(precision));
    nn::GPT model(config, Device::cpu(), 1);
    parallel::DataParallelOptions o;
    o.stage = zero;
    o.precision = parallel::parse_precision(precision);
    parallel::DataParallel dp(model, comm, o);
    optim::AdamW opt(dp.param_groups(0.1f));
    opt.init_state();
    const auto save_pieces = checkpoint::owned_pieces(model, opt, rank, world, zero == 0);
    const auto load_pieces = checkpoint::owned_pieces(model, opt, rank, world, false);
    auto bytes_of = [](const std::vector<checkpoint::Piece>& ps) {
      uint64_t b = 0;
      for (const auto& p : ps) b += p.data.nbytes();
      return b;
    };
    auto total = [&](uint64_t mine) {
      Tensor t = Tensor::from_vector({static_cast<float>(mine)}, {1});
      comm->all_reduce(t, comm::ReduceOp::sum).wait();
      return t.item(0);
    };
    const double save_bytes = total(bytes_of(save_pieces)), load_bytes = total(bytes_of(load_pieces));
    checkpoint::Meta meta;
    meta.world_size = world;
    meta.zero_stage = zero;
    checkpoint::record_engine_state(dp, meta);
    const auto key = checkpoint::EncryptionKey::from_hex(std::string(64, '5'), "bench");  // the same on every rank

    const std::string raw = dir + "/raw-" + std::to_string(rank) + ".bin";
    const double t_raw_w = timed([&] { raw_write(raw, bytes_of(save_pieces)); });
    drop_cache(raw);
    const double t_raw_r = timed([&] { raw_read(raw); });
    fs::remove(raw);

    nlohmann::json result = {{"preset", preset},
                             {"precision", precision},
                             {"world_size", world},
                             {"zero_stage", zero},
                             {"checkpoint_bytes", save_bytes},
                             {"raw_write_gbps", save_bytes / t_raw_w / 1e9},
                             {"raw_read_gbps", save_bytes / t_raw_r / 1e9}};
    for (const bool encrypted : {false, true}) {
      const std::string root = dir + (encrypted ? "/enc" : "/plain");
      checkpoint::SaveOptions so;
      if (encrypted) so.key = key;
      std::string path;
      const double t_save = timed([&] { path = checkpoint::save(root, meta, save_pieces, comm.get(), so); });
      if (rank == 0) drop_cache_dir(root);
      const double t_load = timed([&] {
        checkpoint::Reader r(path, so.key);
        checkpoint::resume_engine(r, model, opt, dp);  // masters and moments, then the parameters from them
      });
      // The part of a background save that blocks training: the host snapshot.
      meta.step = 1;
      double t_snapshot = 0;
      {
        barrier();
        const double t0 = now_s();
        checkpoint::PendingSave pending(root, meta, save_pieces, comm.get(), so);
        t_snapshot = now_s() - t0;
        pending.finish();
      }
      meta.step = 0;
      const std::string tag = encrypted ? "encrypted" : "plain";
      result[tag + "_save_gbps"] = save_bytes / t_save / 1e9;
      result[tag + "_load_gbps"] = load_bytes / t_load / 1e9;
      result[tag + "_async_blocked_ms"] = t_snapshot * 1e3;
    }
    if (rank == 0) {
      std::printf("checkpoint of %s (%s) at world %d, ZeRO %d: %.3f GB (f32 master weights + AdamW moments)\n",
                  preset.c_str(), precision.c_str(), world, zero, save_bytes / 1e9);
      std::printf("  raw sequential write %.3f GB/s, read %.3f GB/s (same disk, same bytes, fsync, cache dropped)\n",
                  result["raw_write_gbps"].get<double>(), result["raw_read_gbps"].get<double>());
      for (const char* tag : {"plain", "encrypted"}) {
        const std::string t = tag;
        std::printf("  %-9s save %.3f GB/s (%.0f%% of raw write), load %.3f GB/s; background save blocks %.1f ms\n",
                    tag, result[t + "_save_gbps"].get<double>(),
                    100.0 * result[t + "_save_gbps"].get<double>() / result["raw_write_gbps"].get<double>(),
                    result[t + "_load_gbps"].get<double>(), result[t + "_async_blocked_ms"].get<double>());
      }
      std::printf("%s\n", result.dump().c_str());
      if (!metrics_out.empty()) std::ofstream(metrics_out) << result.dump() << "\n";
      fs::remove_all(dir);
    }
    barrier();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_checkpoint: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
