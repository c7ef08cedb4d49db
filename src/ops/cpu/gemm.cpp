// sgemm through Eigen. EIGEN_USE_BLAS makes Eigen hand its large float
// products to the linked BLAS (OpenBLAS here), which is faster than Eigen's own
// kernel on these CPUs; small products stay in Eigen's lazy (inline) path.
// This is the only translation unit that evaluates Eigen matrix products, so
// the BLAS routing cannot differ between instantiations of the same template.
#define EIGEN_USE_BLAS
#include "ops/cpu/gemm.h"

#include <Eigen/Core>

namespace dtrain::cpu {
namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMat>;
using Map = Eigen::Map<RowMat>;

template <typename A, typename B>
void accumulate(Map& c, float alpha, const A& a, const B& b, bool overwrite) {
  if (overwrite) {
    c.noalias() = alpha * a * b;
  } else {
    c.noalias() += alpha * a * b;
  }
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, const float* b,
           float beta, float* c) {
  if (m == 0 || n == 0) return;
  Map cm(c, m, n);
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
  const ConstMap am(a, trans_a ? k : m, trans_a ? m : k);
  const ConstMap bm(b, trans_b ? n : k, trans_b ? k : n);
  if (!trans_a && !trans_b) {
    accumulate(cm, alpha, am, bm, overwrite);
  } else if (!trans_a && trans_b) {
    accumulate(cm, alpha, am, bm.transpose(), overwrite);
  } else if (trans_a && !trans_b) {
    accumulate(cm, alpha, am.transpose(), bm, overwrite);
  } else {
    accumulate(cm, alpha, am.transpose(), bm.transpose(), overwrite);
  }
}

}  // namespace dtrain::cpu
