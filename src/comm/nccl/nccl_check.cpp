// NCCL's error text for DTRAIN_NCCL_CHECK (nccl_check.h): the status, NCCL's
// own string, and the NCCL version loaded next to the one built against, since
// NCCL errors often depend on it. Lives with the NCCL backend, its only user.
#ifdef DTRAIN_WITH_CUDA

#include "comm/nccl/nccl_check.h"

namespace dtrain::detail {

std::string describe_nccl_error(ncclResult_t status) {
  int version = 0;
  std::string loaded = ncclGetVersion(&version) == ncclSuccess ? std::to_string(version) : std::string("unknown");
  return concat(static_cast<int>(status), ": ", ncclGetErrorString(status), " (NCCL ", loaded, ", built against ",
                NCCL_MAJOR, ".", NCCL_MINOR, ".", NCCL_PATCH, ")");
}

}  // namespace dtrain::detail

#endif  // DTRAIN_WITH_CUDA
