"""dtrain.ops: the op set, forward and backward (include/dtrain/ops.h).

The C++ conventions hold: outputs are passed in already allocated (NumPy
arrays are written in place), backward ops ADD into the gradients they are
given, and bad shapes, dtypes or devices raise DtrainValueError /
DtrainTypeError naming the op and the argument.
"""
from ._C.ops import (  # noqa: F401
    adamw_step,
    add,
    add_,
    attention,
    attention_backward,
    cast,
    embedding,
    embedding_backward,
    gelu,
    gelu_backward,
    global_norm,
    layernorm,
    layernorm_backward,
    linear,
    linear_backward,
    matmul,
    matmul_backward,
    scale,
    softmax_cross_entropy,
)
