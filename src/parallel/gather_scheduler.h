// GatherScheduler (ZeRO-3): a unit's parameters exist in full only while a
// module that uses them runs. Before a module's forward or backward its
// units are all-gathered (from the buffer pool) and the next units of the
// recorded order are prefetched, prefetch_depth deep; after it, a unit no
// module uses any more goes back to the pool. The order of units is recorded
// in the first forward and backward; a model that then runs differently
// stops the prefetching rather than guessing.
#pragma once

#include <functional>
#include <unordered_map>
#include <vector>

#include "parallel/buffer_pool.h"
#include "parallel/engine_context.h"
#include "parallel/layout.h"
#include "parallel/precision_policy.h"
#include "parallel/sharded_state.h"

namespace dtrain::parallel::detail {

class GatherScheduler {
 public:
  // `unit_done(g)`: called when unit g's last user in backward has run (the
  // structural launch of its reduce-scatter).
  GatherScheduler(EngineContext& ctx, const Layout& layout, ShardedState& state, BufferPool& pool,
                  const PrecisionPolicy& precision, std::function<void(int)> unit_done);

  void begin_phase(int phase);  // 0 forward, 1 backward
  void end_phase();             // the model's forward ended
  void end_backward();          // the model's backward ended
  // Before / after module m (using groups `ids`) runs.
  void acquire(nn::Module* m, const std::vector<int>& ids, bool backward);
  void release_use(nn::Module* m, const std::vector<int>& ids, bool backward, bool sync);
  // At the start of a backward: plans the structural launch once the forward
  // order is known. True when units are launched structurally.
  bool plan_structural_launch();
  // After an update: start gathering the first units of the next forward.
  void prefetch_first_units();
  // Releases every unit no module is using (all of them between steps).
  void release_idle();

  // Direct use (full_parameters): gather one unit and wait, or release it.
  void start_gather(int g);
  void finish_gather(int g);
  void release(int g);
  bool gathered_or_gathering(int g) const { return units_[static_cast<size_t>(g)].state != State::released; }

  void drain() noexcept;

 private:
  enum class State { released, gathering, gathered };
  struct Unit {
    State state = State::released;
    comm::Work work;
    int users = 0;
  };
  void release_idle_except(const std::vector<int>* keep);
  const std::vector<int>* kept_for_backward() const;

  EngineContext& ctx_;
  const Layout& layout_;
  ShardedState& state_;
  BufferPool& pool_;
  const PrecisionPolicy& precision_;
  std::function<void(int)> unit_done_;
  std::vector<Unit> units_;

  // The order units were used in, per phase (0 forward, 1 backward).
  std::vector<nn::Module*> order_[2];
  bool order_recorded_[2] = {false, false};
  bool order_valid_[2] = {true, true};
  int phase_ = 0;
  size_t use_index_ = 0;
  // For each unit, the module that uses it last in backward = the one that
  // used it first in the recorded forward order; empty until planned.
  std::vector<const nn::Module*> last_backward_user_;
};

}  // namespace dtrain::parallel::detail
