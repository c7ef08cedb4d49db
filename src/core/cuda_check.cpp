// The one handler behind DTRAIN_CUDA_CHECK / DTRAIN_CUBLAS_CHECK / DTRAIN_NCCL_CHECK
// (NCCL's status text: comm/nccl/nccl_check.cpp).
#ifdef DTRAIN_WITH_CUDA

#include "core/cuda_check.h"

namespace dtrain::detail {

void throw_gpu_error(const char* library, const char* stmt, const char* file, int line, const std::string& detail) {
  throw_error(stmt, file, line, concat(library, " error ", detail));
}

std::string describe_cuda_error(cudaError_t status) {
  (void)cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  return concat(cudaGetErrorName(status), ": ", cudaGetErrorString(status));
}

std::string describe_cublas_error(cublasStatus_t status) {
  return concat(static_cast<int>(status), ": ", cublasGetStatusString(status));
}

}  // namespace dtrain::detail

#endif  // DTRAIN_WITH_CUDA
