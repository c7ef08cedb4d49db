// sgemm through Eigen, threaded by dtrain's OpenMP team.
//
// EIGEN_USE_BLAS makes Eigen hand its float products to the linked BLAS
// (OpenBLAS here), which is faster than Eigen's own kernel on these CPUs (about
// 80% of OpenBLAS). This is the only translation unit that evaluates Eigen
// matrix products, so the BLAS routing cannot differ between instantiations of
// the same template in different files.
//
// Threading: OpenBLAS's own pthread pool and the OpenMP team of the other ops
// oversubscribe the cores, and on a loaded machine a small threaded GEMM then
// waits milliseconds for sleeping workers. So the BLAS runs single-threaded
// and a large product is split here into one block of output rows (or
// columns) per OpenMP thread: one thread pool, one knob (OMP_NUM_THREADS), and
// small products stay on the calling thread.
#define EIGEN_USE_BLAS
#include "ops/cpu/gemm.h"

#include <omp.h>

#include <Eigen/Core>

// OpenBLAS's thread control, if the BLAS is OpenBLAS (weak: absent otherwise).
extern "C" {
void openblas_set_num_threads(int num_threads) __attribute__((weak));
int openblas_get_num_threads(void) __attribute__((weak));
}

namespace dtrain::cpu {
namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Stride = Eigen::OuterStride<>;
using ConstMap = Eigen::Map<const RowMat, 0, Stride>;
using Map = Eigen::Map<RowMat, 0, Stride>;

// Below this many multiply-adds (about 320^3, some 0.3 ms on one core) a
// product runs on the calling thread. Splitting saves at most half of that on
// an idle machine, but on an oversubscribed one (a shared 2-core box) every
// parallel region waits for a descheduled partner thread, measured at 15-20 ms.
constexpr double kParallelWork = 1 << 25;
// Blocks are multiples of this many rows/columns (keeps BLAS kernels on full tiles).
constexpr int64_t kBlockAlign = 16;

void blas_single_threaded() {
  if (openblas_get_num_threads != nullptr && openblas_set_num_threads != nullptr && openblas_get_num_threads() != 1) {
    openblas_set_num_threads(1);
  }
}

template <typename A, typename B>
void product(Map& c, float alpha, const A& a, const B& b, bool overwrite) {
  if (overwrite) {
    c.noalias() = alpha * a * b;
  } else {
    c.noalias() += alpha * a * b;
  }
}

// One block on the calling thread; lda/ldb/ldc are row strides of the stored matrices.
void gemm_block(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  Map cm(c, m, n, Stride(ldc));
  if (k == 0 || alpha == 0.0f) {
    if (beta == 0.0f) {
      cm.setZero();
    } else {
      cm *= beta;
    }
    return;
  }
  const bool overwrite = beta == 0.0f;
  if (!overwrite && beta != 1.0f) cm *= beta;
  const ConstMap am(a, trans_a ? k : m, trans_a ? m : k, Stride(lda));
  const ConstMap bm(b, trans_b ? n : k, trans_b ? k : n, Stride(ldb));
  if (!trans_a && !trans_b) {
    product(cm, alpha, am, bm, overwrite);
  } else if (!trans_a && trans_b) {
    product(cm, alpha, am, bm.transpose(), overwrite);
  } else if (trans_a && !trans_b) {
    product(cm, alpha, am.transpose(), bm, overwrite);
  } else {
    product(cm, alpha, am.transpose(), bm.transpose(), overwrite);
  }
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, const float* b,
           float beta, float* c) {
  blas_single_threaded();
  const int64_t lda = trans_a ? m : k, ldb = trans_b ? k : n, ldc = n;
  const bool split_rows = m >= n;
  const int64_t dim = split_rows ? m : n;
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (threads <= 1 || static_cast<double>(m) * n * k < kParallelWork || dim < 2 * kBlockAlign) {
    gemm_block(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  int64_t chunk = (dim + threads - 1) / threads;
  chunk = (chunk + kBlockAlign - 1) / kBlockAlign * kBlockAlign;
  const int blocks = static_cast<int>((dim + chunk - 1) / chunk);
#pragma omp parallel for schedule(static) num_threads(blocks)
  for (int blk = 0; blk < blocks; ++blk) {
    const int64_t s = blk * chunk, len = s + chunk < dim ? chunk : dim - s;
    if (split_rows) {
      // Rows [s, s+len) of op(a) and of c; all of op(b).
      const float* ab = trans_a ? a + s : a + s * lda;
      gemm_block(trans_a, trans_b, len, n, k, alpha, ab, lda, b, ldb, beta, c + s * ldc, ldc);
    } else {
      // Columns [s, s+len) of op(b) and of c; all of op(a).
      const float* bb = trans_b ? b + s * ldb : b + s;
      gemm_block(trans_a, trans_b, m, len, k, alpha, a, lda, bb, ldb, beta, c + s, ldc);
    }
  }
}

}  // namespace dtrain::cpu
