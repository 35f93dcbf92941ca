#ifndef ZEROTRAIN_CORE_CUDA_STREAM_FWD_H_
#define ZEROTRAIN_CORE_CUDA_STREAM_FWD_H_

// Lets CPU-only code declare CUDA launchers without CUDA's headers. The
// typedef is the one in CUDA's driver_types.h; repeating it is legal C++.
struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;

#endif  // ZEROTRAIN_CORE_CUDA_STREAM_FWD_H_
