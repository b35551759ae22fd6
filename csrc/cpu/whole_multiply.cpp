#include "whole_multiply.h"

#include "matmul/packed_multiply.h"

namespace fusedrnn::cpu {

at::Tensor whole_multiply(const at::Tensor& a, const at::Tensor& b,
                          const std::optional<at::Tensor>& bias) {
  if (a.scalar_type() != at::kFloat || !packed_multiply_available() ||
      a.size(0) < kMinRowsToPack) {
    return bias ? at::addmm(*bias, a, b) : at::mm(a, b);
  }
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(0) &&
                  b.scalar_type() == at::kFloat,
              "fusedrnn: whole_multiply got ", a.sizes(), " x ", b.sizes());
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  if (M == 0 || N == 0 || K == 0) {
    return bias ? bias->expand({M, N}).contiguous()
                : at::zeros({M, N}, a.options());
  }
  // The kernels add the bias as they store C, so C is written once.
  at::Tensor out = at::empty({M, N}, a.options());
  const at::Tensor bias_c = bias ? bias->contiguous() : at::Tensor();
  // PackedMatrix reads a row-major W as W or as W^T.
  const bool transposed = !b.is_contiguous() && b.t().is_contiguous();
  const at::Tensor w = transposed ? b.t() : b.contiguous();
  const PackedMatrix packed(w.data_ptr<float>(), w.size(0), w.size(1),
                            transposed);
  packed_multiply(M, {a.data_ptr<float>(), a.stride(0), a.stride(1)}, packed,
                  0.0f, out.data_ptr<float>(), N,
                  bias_c.defined() ? bias_c.data_ptr<float>() : nullptr);
  return out;
}

}  // namespace fusedrnn::cpu
