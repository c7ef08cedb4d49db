// CPU token + position embedding.
//
// Backward scatters rows of dout into dwte at token indices, and the same
// token may appear many times. Instead of atomics, each thread owns the
// vocabulary rows with token % num_threads == thread and walks all positions
// in order, so every dwte row is updated by exactly one thread, in a fixed
// order (deterministic for a given thread count). dwpe rows are owned by
// position in the same way.
#include "ops/backends.h"
#include "ops/cpu/parallel.h"

namespace dtrain::cpu {

void embedding(Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor& wpe) {
  const int64_t batch = tokens.size(0), seq = tokens.size(1), ch = wte.size(1);
  const int32_t* ptok = tokens.data<int32_t>();
  const float* pte = wte.data<float>();
  const float* ppe = wpe.data<float>();
  float* po = out.data<float>();
#pragma omp parallel for schedule(static) if (batch * seq * ch > kParallelGrain)
  for (int64_t bt = 0; bt < batch * seq; ++bt) {
    const int64_t t = bt % seq;
    const float* te = pte + static_cast<int64_t>(ptok[bt]) * ch;
    const float* pe = ppe + t * ch;
    float* o = po + bt * ch;
#pragma omp simd
    for (int64_t i = 0; i < ch; ++i) o[i] = te[i] + pe[i];
  }
}

void embedding_backward(Tensor& dwte, Tensor& dwpe, const Tensor& dout, const Tensor& tokens) {
  const int64_t batch = tokens.size(0), seq = tokens.size(1), ch = dout.size(2);
  const int32_t* ptok = tokens.data<int32_t>();
  const float* pd = dout.data<float>();
  const bool parallel = batch * seq * ch > kParallelGrain;
  if (dwte.defined()) {
    float* pte = dwte.data<float>();
#pragma omp parallel if (parallel)
    {
      const int64_t nt = omp_get_num_threads(), me = omp_get_thread_num();
      for (int64_t bt = 0; bt < batch * seq; ++bt) {
        const int64_t tok = ptok[bt];
        if (tok % nt != me) continue;
        float* row = pte + tok * ch;
        const float* d = pd + bt * ch;
#pragma omp simd
        for (int64_t i = 0; i < ch; ++i) row[i] += d[i];
      }
    }
  }
  if (dwpe.defined()) {
    float* ppe = dwpe.data<float>();
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t t = 0; t < seq; ++t) {
      float* row = ppe + t * ch;
      for (int64_t b = 0; b < batch; ++b) {
        const float* d = pd + (b * seq + t) * ch;
#pragma omp simd
        for (int64_t i = 0; i < ch; ++i) row[i] += d[i];
      }
    }
  }
}

}  // namespace dtrain::cpu
