// The one handler behind DTRAIN_CUDA_CHECK / DTRAIN_CUBLAS_CHECK / DTRAIN_NCCL_CHECK.
#ifdef DTRAIN_WITH_CUDA

#include "core/cuda_check.h"

#include "core/nccl_check.h"

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

std::string describe_nccl_error(ncclResult_t status) {
  int version = 0;
  std::string loaded = ncclGetVersion(&version) == ncclSuccess ? std::to_string(version) : std::string("unknown");
  return concat(static_cast<int>(status), ": ", ncclGetErrorString(status), " (NCCL ", loaded, ", built against ",
                NCCL_MAJOR, ".", NCCL_MINOR, ".", NCCL_PATCH, ")");
}

}  // namespace dtrain::detail

#endif  // DTRAIN_WITH_CUDA
