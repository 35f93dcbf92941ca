#ifndef ZEROTRAIN_KERNELS_ATTENTION_REF_H_
#define ZEROTRAIN_KERNELS_ATTENTION_REF_H_

// The CPU reference behind AttentionForward/AttentionBackward, exposed as
// templates so tests can run it in double (finite differences) as well as in
// the storage types the op supports. Shapes must already be validated. The
// log-sum-exp is kept in Acc<T>: float for every storage type the op
// supports (matching the op's fp32 lse), double for double.
//
// Instantiated for T in {float, Half, BFloat16, double}.

#include "kernels/attention.h"
#include "kernels/ref_util.h"

namespace zt::kernels {

template <typename T>
void AttentionForwardCpu(const AttentionParams& p, const T* qkv, T* out, Acc<T>* lse);

template <typename T>
void AttentionBackwardCpu(const AttentionParams& p, const T* dout, const T* qkv, const T* out,
                          const Acc<T>* lse, T* dqkv);

}  // namespace zt::kernels

#endif  // ZEROTRAIN_KERNELS_ATTENTION_REF_H_
