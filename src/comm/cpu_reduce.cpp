#include "comm/cpu_reduce.h"

#include <algorithm>
#include <cstdint>

#include "dtrain/error.h"

namespace dtrain::comm {

namespace {

// Load/store between the storage type and the type arithmetic happens in.
inline float load(bf16_t v) {
  return static_cast<float>(v);
}
inline float load(f16_t v) {
  return static_cast<float>(v);
}
inline float load(float v) {
  return v;
}
inline int32_t load(int32_t v) {
  return v;
}
inline int64_t load(int64_t v) {
  return v;
}
template <typename T, typename A>
inline T store(A v) {
  return T(v);
}

struct Sum {
  template <typename A>
  A operator()(A a, A b) const {
    return a + b;
  }
};
struct Prod {
  template <typename A>
  A operator()(A a, A b) const {
    return a * b;
  }
};
struct Max {
  template <typename A>
  A operator()(A a, A b) const {
    return std::max(a, b);
  }
};
struct Min {
  template <typename A>
  A operator()(A a, A b) const {
    return std::min(a, b);
  }
};

template <typename T, typename Op>
void reduce(void* out, const void* a, const void* b, size_t n) {
  T* o = static_cast<T*>(out);
  const T* x = static_cast<const T*>(a);
  const T* y = static_cast<const T*>(b);
  const Op op;
  for (size_t i = 0; i < n; ++i) o[i] = store<T>(op(load(x[i]), load(y[i])));
}

template <typename T>
ReduceFn pick(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::avg:
      return &reduce<T, Sum>;
    case ReduceOp::product:
      return &reduce<T, Prod>;
    case ReduceOp::max:
      return &reduce<T, Max>;
    case ReduceOp::min:
      return &reduce<T, Min>;
  }
  DTRAIN_THROW("unknown reduce op");
}

template <typename T>
void divide(void* data, size_t n, int divisor) {
  T* p = static_cast<T*>(data);
  for (size_t i = 0; i < n; ++i) p[i] = store<T>(load(p[i]) / static_cast<decltype(load(p[i]))>(divisor));
}

}  // namespace

void check_collective_dtype(DType dtype, const char* op) {
  DTRAIN_CHECK(
      dtype == DType::f32 || dtype == DType::bf16 || dtype == DType::f16 || dtype == DType::i32 || dtype == DType::i64,
      op, ": dtype ", dtype_name(dtype), " is not supported by collectives (use f32, bf16, f16, i32 or i64)");
}

ReduceFn reduce_function(DType dtype, ReduceOp op) {
  switch (dtype) {
    case DType::f32:
      return pick<float>(op);
    case DType::bf16:
      return pick<bf16_t>(op);
    case DType::f16:
      return pick<f16_t>(op);
    case DType::i32:
      return pick<int32_t>(op);
    case DType::i64:
      return pick<int64_t>(op);
    default:
      break;
  }
  check_collective_dtype(dtype, "reduce");
  return nullptr;
}

void divide_in_place(DType dtype, void* data, size_t n, int divisor) {
  switch (dtype) {
    case DType::f32:
      return divide<float>(data, n, divisor);
    case DType::bf16:
      return divide<bf16_t>(data, n, divisor);
    case DType::f16:
      return divide<f16_t>(data, n, divisor);
    case DType::i32:
      return divide<int32_t>(data, n, divisor);
    case DType::i64:
      return divide<int64_t>(data, n, divisor);
    default:
      check_collective_dtype(dtype, "avg");
  }
}

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return "sum";
    case ReduceOp::avg:
      return "avg";
    case ReduceOp::max:
      return "max";
    case ReduceOp::min:
      return "min";
    case ReduceOp::product:
      return "product";
  }
  return "?";
}

}  // namespace dtrain::comm
