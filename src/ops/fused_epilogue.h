// Internal: counts how linear_gelu and matmul_dgelu_bgrad ran (one fused
// library GEMM, or composed from separate kernels), so a test can tell which
// path a device took. Read through ops::fused_epilogue_counts().
#pragma once

namespace dtrain::ops::detail {

void count_fused_epilogue(bool fused);

}  // namespace dtrain::ops::detail
