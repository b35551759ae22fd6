#include "whole_multiply.h"

#include <ATen/OpMathType.h>

#include "buffer_pool.h"
#include "matmul/few_rows.h"
#include "matmul/packed_multiply.h"

namespace fusedrnn::cpu {
namespace {

template <typename E>
at::Tensor packed_whole_multiply(const at::Tensor& a, const at::Tensor& b,
                                 const std::optional<at::Tensor>& bias) {
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  const auto float_options = a.options().dtype(at::kFloat);
  if (M == 0 || N == 0 || K == 0) {
    return bias ? bias->to(at::kFloat).expand({M, N}).contiguous()
                : at::zeros({M, N}, float_options);
  }
  // The kernels add the bias as they store C, so C is written once.
  at::Tensor out = pooled_empty({M, N}, float_options);
  const at::Tensor bias_c = bias ? bias->to(at::kFloat).contiguous() : at::Tensor();
  // PackedMatrix reads a row-major W as W or as W^T.
  const bool transposed = !b.is_contiguous() && b.t().is_contiguous();
  const at::Tensor w = transposed ? b.t() : b.contiguous();
  const PackedMatrix<E> packed(w.data_ptr<E>(), w.size(0), w.size(1),
                               transposed);
  packed_multiply(M, LeftMatrix<E>{a.data_ptr<E>(), a.stride(0), a.stride(1)},
                  packed, 0.0f, out.data_ptr<float>(), N,
                  bias_c.defined() ? bias_c.data_ptr<float>() : nullptr);
  return out;
}

// The same for bfloat16 with fewer than kMinRowsToPack rows of a, where
// packing b would cost more than the multiply: the few-row kernels read it
// in place.
at::Tensor few_rows_whole_multiply(const at::Tensor& a, const at::Tensor& b,
                                   const std::optional<at::Tensor>& bias) {
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  at::Tensor out = pooled_empty({M, N}, a.options().dtype(at::kFloat));
  const at::Tensor a_c = a.contiguous();
  // b is W^T for a row-major W (N x K), or W (K x N) itself.
  const bool transposed = !b.is_contiguous() && b.t().is_contiguous();
  const at::Tensor w = transposed ? b.t() : b.contiguous();
  few_rows_multiply(M, a_c.data_ptr<c10::BFloat16>(), K,
                    w.data_ptr<c10::BFloat16>(), w.size(1), K, N, transposed,
                    0.0f, out.data_ptr<float>(), N);
  return bias ? out.add_(*bias) : out;
}

}  // namespace

at::Tensor whole_multiply(const at::Tensor& a, const at::Tensor& b,
                          const std::optional<at::Tensor>& bias) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(0) &&
                  b.scalar_type() == a.scalar_type(),
              "fusedrnn: whole_multiply got ", a.sizes(), " x ", b.sizes());
  if (a.scalar_type() == at::kBFloat16 &&
      packed_multiply_available<c10::BFloat16>()) {
    return a.size(0) < kMinRowsToPack
               ? few_rows_whole_multiply(a, b, bias)
               : packed_whole_multiply<c10::BFloat16>(a, b, bias);
  }
  if (a.scalar_type() == at::kFloat && packed_multiply_available<float>() &&
      a.size(0) >= kMinRowsToPack) {
    return packed_whole_multiply<float>(a, b, bias);
  }
  // BLAS, in the compute type.
  const auto dtype = at::toOpMathType(a.scalar_type());
  const at::Tensor a_c = a.to(dtype), b_c = b.to(dtype);
  return bias ? at::addmm(bias->to(dtype), a_c, b_c) : at::mm(a_c, b_c);
}

}  // namespace fusedrnn::cpu
