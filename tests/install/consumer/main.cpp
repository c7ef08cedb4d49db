#include <dtrain/dtrain.h>

#include <cstdio>

int main() {
  dtrain::Tensor t = dtrain::Tensor::full({2, 3}, 1.5);
  std::printf("%s sum=%g\nconsumer ok\n", t.describe().c_str(), t.item(0) * static_cast<double>(t.numel()));
  return 0;
}
