#include "whole_multiply.h"

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>

#include "buffer_pool.h"
#include "matmul/few_rows.h"
#include "matmul/packed_multiply.h"
#include "matmul/row_dots.h"

namespace fusedrnn::cpu {
namespace {

// Whether b is W^T for a row-major W (PackedMatrix and row_dots read W so).
bool is_transposed_row_major(const at::Tensor& b) {
  return !b.is_contiguous() && b.t().is_contiguous();
}

// b in the tile kernels' layout. PackedMatrix reads a row-major W as W or
// as W^T; any other b is made contiguous first.
template <typename E>
PackedMatrix<E> packed_operand(const at::Tensor& b) {
  const bool transposed = is_transposed_row_major(b);
  const at::Tensor w = transposed ? b.t() : b.contiguous();
  return PackedMatrix<E>(w.data_ptr<E>(), w.size(0), w.size(1), transposed);
}

// The bias as the kernels add it, in float; undefined without one.
at::Tensor float_bias(const std::optional<at::Tensor>& bias) {
  return bias ? bias->to(at::kFloat).contiguous() : at::Tensor();
}

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
  const at::Tensor bias_c = float_bias(bias);
  packed_multiply(M, LeftMatrix<E>{a.data_ptr<E>(), a.stride(0), a.stride(1)},
                  packed_operand<E>(b), 0.0f, out.data_ptr<float>(), N,
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
  const bool transposed = is_transposed_row_major(b);
  const at::Tensor w = transposed ? b.t() : b.contiguous();
  few_rows_multiply(M, a_c.data_ptr<c10::BFloat16>(), K,
                    w.data_ptr<c10::BFloat16>(), w.size(1), K, N, transposed,
                    0.0f, out.data_ptr<float>(), N);
  return bias ? out.add_(*bias) : out;
}

// The same for float and double with fewer than kMinRowsToPack rows of a
// and b = W^T for a row-major W (the input projection of a short sequence
// at a small batch): each element of C is a dot product of a row of a and a
// row of W, read in place (matmul/row_dots.h). BLAS takes this shape (one
// row by a 1 MiB weight) at a fraction of the cache's bandwidth.
template <typename T>
at::Tensor row_dots_whole_multiply(const at::Tensor& a, const at::Tensor& b,
                                   const std::optional<at::Tensor>& bias) {
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  at::Tensor out = pooled_empty({M, N}, a.options());
  const at::Tensor a_c = a.contiguous();
  const at::Tensor w = b.t();  // (N, K), row-major
  const at::Tensor bias_c = bias ? bias->contiguous() : at::Tensor();
  const T* a_data = a_c.data_ptr<T>();
  const T* w_data = w.data_ptr<T>();
  const T* bias_data = bias_c.defined() ? bias_c.data_ptr<T>() : nullptr;
  T* c = out.data_ptr<T>();
  const int64_t grain =
      std::max<int64_t>(1, kMinTaskWork / std::max<int64_t>(1, M * K));
  at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) {
    for (int64_t b0 = 0; b0 < M; b0 += kMaxDotVectors) {
      const int64_t vectors = std::min(kMaxDotVectors, M - b0);
      row_dots(n1 - n0, vectors, w_data + n0 * K, K, a_data + b0 * K, K, K,
               c + b0 * N + n0, N);
    }
    if (bias_data == nullptr) return;
    for (int64_t i = 0; i < M; ++i) {
      for (int64_t n = n0; n < n1; ++n) c[i * N + n] += bias_data[n];
    }
  });
  return out;
}

// Whether the steps of x (T, B, K) are one strided matrix of T*B rows in
// time-major order.
bool steps_flatten(const at::Tensor& x) {
  return x.size(0) == 1 || x.size(1) == 1 ||
         x.stride(0) == x.size(1) * x.stride(1);
}

// x (T, B, K) cut into blocks of rows that are each a strided matrix: its
// sequences, or its steps where there are fewer steps than sequences (the
// fewer the blocks, the more rows share each pass over the weight). Where
// a block's rows lie in x, and in the time-major (T*B, N) result.
struct RowBlocks {
  int64_t dim;               // x's dimension the blocks run along
  int64_t count, rows;       // blocks, rows per block
  int64_t x_step, x_row;      // x's strides between blocks and rows
  int64_t out_step, out_row;  // the result's
};

RowBlocks row_blocks(const at::Tensor& x, int64_t N) {
  const int64_t dim = x.size(0) < x.size(1) ? 0 : 1, other = 1 - dim;
  const int64_t out_strides[2] = {x.size(1) * N, N};
  return {dim,           x.size(dim),      x.size(other),     x.stride(dim),
          x.stride(other), out_strides[dim], out_strides[other]};
}

// time_major_multiply by blocks on the tile kernels: b is packed once for
// all of them.
template <typename E>
at::Tensor packed_blocks_multiply(const at::Tensor& x, const at::Tensor& b,
                                  const std::optional<at::Tensor>& bias) {
  const int64_t N = b.size(1);
  const RowBlocks blocks = row_blocks(x, N);
  at::Tensor out = pooled_empty({x.size(0) * x.size(1), N},
                                x.options().dtype(at::kFloat));
  const at::Tensor bias_c = float_bias(bias);
  packed_multiply_blocks(
      blocks.count, blocks.rows, LeftMatrix<E>{x.data_ptr<E>(), blocks.x_row},
      blocks.x_step, packed_operand<E>(b), out.data_ptr<float>(),
      blocks.out_row, blocks.out_step,
      bias_c.defined() ? bias_c.data_ptr<float>() : nullptr);
  return out;
}

// The same with BLAS (float, double), block by block into the result's
// strided rows.
at::Tensor blas_blocks_multiply(const at::Tensor& x, const at::Tensor& b,
                                const std::optional<at::Tensor>& bias) {
  const int64_t N = b.size(1);
  const RowBlocks blocks = row_blocks(x, N);
  at::Tensor out = pooled_empty({x.size(0) * x.size(1), N}, x.options());
  const at::Tensor out_steps = out.view({x.size(0), x.size(1), N});
  for (int64_t i = 0; i < blocks.count; ++i) {
    at::Tensor c = out_steps.select(blocks.dim, i);
    const at::Tensor a = x.select(blocks.dim, i);
    if (bias) {
      at::addmm_out(c, *bias, a, b);
    } else {
      at::mm_out(c, a, b);
    }
  }
  return out;
}

}  // namespace

at::Tensor time_major_multiply(const at::Tensor& x, const at::Tensor& b,
                               const std::optional<at::Tensor>& bias) {
  TORCH_CHECK((x.dim() == 2 || x.dim() == 3) && b.dim() == 2 &&
                  x.size(-1) == b.size(0) && b.scalar_type() == x.scalar_type(),
              "fusedrnn: time_major_multiply got ", x.sizes(), " x ",
              b.sizes());
  if (x.dim() == 2) return whole_multiply(x, b, bias);
  const int64_t rows = x.size(0) * x.size(1), K = x.size(2), N = b.size(1);
  // Few rows are copied (the few-row kernels read them contiguous), and so
  // are rows whose elements are not adjacent, which the tile kernels would
  // copy anyway (packed_multiply.cpp).
  const bool by_blocks = !steps_flatten(x) && x.stride(2) == 1 &&
                         rows >= kMinRowsToPack && K > 0 && N > 0;
  if (by_blocks) {
    if (x.scalar_type() == at::kBFloat16 &&
        packed_multiply_available<c10::BFloat16>()) {
      return packed_blocks_multiply<c10::BFloat16>(x, b, bias);
    }
    if (x.scalar_type() == at::kFloat && packed_multiply_available<float>()) {
      return packed_blocks_multiply<float>(x, b, bias);
    }
    if (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble) {
      return blas_blocks_multiply(x, b, bias);
    }
  }
  // A view where the steps flatten, else a copy.
  return whole_multiply(x.reshape({rows, K}), b, bias);
}

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
  if (a.size(0) < kMinRowsToPack && a.size(0) > 0 && a.size(1) > 0 &&
      is_transposed_row_major(b)) {
    if (a.scalar_type() == at::kFloat) {
      return row_dots_whole_multiply<float>(a, b, bias);
    }
    if (a.scalar_type() == at::kDouble) {
      return row_dots_whole_multiply<double>(a, b, bias);
    }
  }
  // BLAS, in the compute type.
  const auto dtype = at::toOpMathType(a.scalar_type());
  const at::Tensor a_c = a.to(dtype), b_c = b.to(dtype);
  return bias ? at::addmm(bias->to(dtype), a_c, b_c) : at::mm(a_c, b_c);
}

}  // namespace fusedrnn::cpu
