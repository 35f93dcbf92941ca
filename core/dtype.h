#ifndef ZEROTRAIN_CORE_DTYPE_H_
#define ZEROTRAIN_CORE_DTYPE_H_

// Storage types and exact host-side conversions. float <-> fp16/bf16 round to
// nearest, ties to even, with overflow to infinity, gradual underflow to
// subnormals, and NaN mapped to the canonical quiet NaN 0x7fff (what CUDA's
// own host conversions produce), so host-prepared data and device-converted
// data agree bit for bit.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace zt {

enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

inline constexpr size_t DTypeSize(DType t) { return t == DType::kFloat32 ? 4 : 2; }

// Unit roundoff (half a unit in the last place of 1.0) is eps/2; this is the
// machine epsilon: the gap between 1.0 and the next value.
inline constexpr double DTypeEpsilon(DType t) {
  return t == DType::kFloat32 ? 1.1920928955078125e-07
         : t == DType::kFloat16 ? 9.765625e-04
                                : 7.8125e-03;
}

absl::string_view DTypeName(DType t);
// Accepts "fp32"/"float32", "fp16"/"float16", "bf16"/"bfloat16".
absl::StatusOr<DType> ParseDType(absl::string_view name);

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

inline float BitsToFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

inline uint16_t FloatToHalfBits(float f) {
  const uint32_t bits = FloatBits(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t x = bits & 0x7fffffffu;
  if (x >= 0x7f800000u) return x == 0x7f800000u ? (sign | 0x7c00u) : 0x7fffu;
  if (x >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to infinity.
  if (x <= 0x33000000u) return sign;            // <= 2^-25 rounds (ties even) to 0.
  const uint32_t exponent = x >> 23;
  uint32_t value, shift, base;
  if (exponent < 113) {  // Below 2^-14: a half subnormal, unit 2^-24.
    value = (x & 0x7fffffu) | 0x800000u;
    shift = 126 - exponent;
    base = 0;
  } else {
    value = x & 0x7fffffu;
    shift = 13;
    base = (exponent - 112) << 10;
  }
  uint32_t result = base | (value >> shift);
  const uint32_t rest = value & ((1u << shift) - 1);
  const uint32_t halfway = 1u << (shift - 1);
  // A carry out of the mantissa lands in the exponent, which is the right
  // next value (including the step from subnormal to normal).
  if (rest > halfway || (rest == halfway && (result & 1u))) ++result;
  return static_cast<uint16_t>(sign | result);
}

inline float HalfBitsToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return BitsToFloat(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) {
    // Subnormal (or zero): exactly mantissa * 2^-24, representable in float.
    const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-08f;
    return BitsToFloat(sign | FloatBits(magnitude));
  }
  return BitsToFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

inline uint16_t FloatToBFloat16Bits(float f) {
  const uint32_t bits = FloatBits(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
  // Adding 0x7fff plus the lowest kept bit rounds to nearest, ties to even;
  // a carry propagates into the exponent (up to infinity) correctly.
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

inline float BFloat16BitsToFloat(uint16_t b) { return BitsToFloat(static_cast<uint32_t>(b) << 16); }

// 16-bit storage types. They convert explicitly only: an accidental implicit
// conversion in a loop hides a rounding step.
struct Half {
  uint16_t bits = 0;
  static Half FromBits(uint16_t b) { return Half{b}; }
  static Half FromFloat(float f) { return Half{FloatToHalfBits(f)}; }
  float ToFloat() const { return HalfBitsToFloat(bits); }
};

struct BFloat16 {
  uint16_t bits = 0;
  static BFloat16 FromBits(uint16_t b) { return BFloat16{b}; }
  static BFloat16 FromFloat(float f) { return BFloat16{FloatToBFloat16Bits(f)}; }
  float ToFloat() const { return BFloat16BitsToFloat(bits); }
};

static_assert(sizeof(Half) == 2 && sizeof(BFloat16) == 2);

// Generic helpers for templated CPU references.
template <typename T>
inline float ToFloat(T v) {
  return v.ToFloat();
}
template <>
inline float ToFloat<float>(float v) {
  return v;
}
template <typename T>
inline T FromFloat(float f) {
  return T::FromFloat(f);
}
template <>
inline float FromFloat<float>(float f) {
  return f;
}

template <typename T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::kFloat32;
};
template <>
struct DTypeOf<Half> {
  static constexpr DType value = DType::kFloat16;
};
template <>
struct DTypeOf<BFloat16> {
  static constexpr DType value = DType::kBFloat16;
};

// Rounds a float to the nearest value representable in `t` (for references
// that model a 16-bit store).
inline float RoundTo(DType t, float f) {
  switch (t) {
    case DType::kFloat16:
      return HalfBitsToFloat(FloatToHalfBits(f));
    case DType::kBFloat16:
      return BFloat16BitsToFloat(FloatToBFloat16Bits(f));
    default:
      return f;
  }
}

}  // namespace zt

#endif  // ZEROTRAIN_CORE_DTYPE_H_
