#include "trainer/synthetic_corpus.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "glog/logging.h"

namespace zt {
namespace {

// SplitMix64: a tiny generator with exactly specified output, so streams are
// the same bits on every platform and standard library (std:: distributions
// are not).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}

  uint64_t Next() {
    state_ += 0x9E3779B97F4A7C15ull;
    return Mix(state_);
  }
  // Uniform in [0, 1), 53 random bits.
  double Uniform() { return (Next() >> 11) * 0x1.0p-53; }
  // Uniform in (0, 1].
  double UniformOpenZero() { return ((Next() >> 11) + 1) * 0x1.0p-53; }
  // Uniform integer in [0, n); the bias of the multiply-shift (< n / 2^64) is
  // irrelevant here.
  uint64_t Below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(Next()) * n) >>
                                 64);
  }

  static uint64_t Mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
};

// Distinct domains so the table's and each block's randomness never overlap.
uint64_t TableSeed(uint64_t seed) {
  return Rng::Mix(seed ^ 0x7AB1E5EED0000000ull);
}
uint64_t BlockSeed(uint64_t seed, uint64_t stream, int64_t block) {
  uint64_t h = Rng::Mix(seed ^ 0x5EEDB10C00000000ull);
  h = Rng::Mix(h ^ (stream * 0xD1B54A32D192ED03ull));
  return Rng::Mix(h ^ (static_cast<uint64_t>(block) * 0x8CB92BA72F3D8DD7ull));
}

constexpr int64_t kMaxStates = 65536;
constexpr int64_t kMaxTableEntries = int64_t{1} << 24;
constexpr int kMaxPowerIterations = 100000;

absl::Status OutOfRange(absl::string_view field, int64_t value,
                        absl::string_view rule) {
  return absl::InvalidArgumentError(absl::StrCat(
      "data.synthetic.", field, " = ", value, " is out of range: ", rule));
}

}  // namespace

absl::StatusOr<SyntheticCorpus> SyntheticCorpus::Create(
    const SyntheticCorpusConfig& config) {
  const int64_t v = config.vocab_size();
  if (v < 2 || v > 65536) {
    return OutOfRange("vocab_size", v, "must be in [2, 65536]");
  }
  if (config.order() < 1 || config.order() > 3) {
    return OutOfRange("order", config.order(), "must be in [1, 3]");
  }
  if (config.branching() < 2 || config.branching() > v) {
    return OutOfRange("branching", config.branching(),
                      absl::StrCat("must be in [2, vocab_size = ", v, "]"));
  }
  int64_t states = 1;
  for (int i = 0; i < config.order(); ++i) {
    states *= v;
    if (states > kMaxStates) {
      return absl::InvalidArgumentError(absl::StrCat(
          "data.synthetic.vocab_size ^ data.synthetic.order is out of range: "
          "must be <= ",
          kMaxStates, " states"));
    }
  }
  if (states * config.branching() > kMaxTableEntries) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data.synthetic: states * branching = ", states * config.branching(),
        " is out of range: must be <= ", kMaxTableEntries));
  }
  if (config.block_tokens() <= config.order()) {
    return OutOfRange("block_tokens", config.block_tokens(),
                      absl::StrCat("must be > order = ", config.order()));
  }

  SyntheticCorpus c;
  c.vocab_size_ = static_cast<int32_t>(v);
  c.order_ = config.order();
  c.branching_ = config.branching();
  c.num_states_ = states;
  c.block_tokens_ = config.block_tokens();
  c.seed_ = config.seed();

  const int k = c.branching_;
  c.successors_.resize(states * k);
  c.cumulative_.resize(states * k);
  std::vector<double> probs(states * k);
  // Partial Fisher-Yates on a permutation that persists across states: each
  // pass yields a uniform k-subset whatever order the array is left in.
  std::vector<int32_t> perm(v);
  std::iota(perm.begin(), perm.end(), 0);
  Rng rng(TableSeed(c.seed_));
  for (int64_t s = 0; s < states; ++s) {
    double total = 0;
    for (int i = 0; i < k; ++i) {
      const int64_t j = i + rng.Below(v - i);
      std::swap(perm[i], perm[j]);
      c.successors_[s * k + i] = perm[i];
      // -log(U) ~ Exp(1); normalised exponentials are a flat Dirichlet.
      probs[s * k + i] = -std::log(rng.UniformOpenZero());
      total += probs[s * k + i];
    }
    double cum = 0;
    for (int i = 0; i < k; ++i) {
      probs[s * k + i] /= total;
      cum += probs[s * k + i];
      c.cumulative_[s * k + i] = cum;
    }
    c.cumulative_[s * k + k - 1] = 1.0;
  }

  // Power iteration on the lazy chain from the uniform distribution.
  std::vector<double> pi(states, 1.0 / states), next(states);
  bool converged = false;
  for (int it = 0; it < kMaxPowerIterations && !converged; ++it) {
    for (int64_t s = 0; s < states; ++s) next[s] = 0.5 * pi[s];
    for (int64_t s = 0; s < states; ++s) {
      const double half = 0.5 * pi[s];
      for (int i = 0; i < k; ++i) {
        next[c.NextState(s, c.successors_[s * k + i])] +=
            half * probs[s * k + i];
      }
    }
    double diff = 0, sum = 0;
    for (int64_t s = 0; s < states; ++s) {
      diff += std::abs(next[s] - pi[s]);
      sum += next[s];
    }
    for (int64_t s = 0; s < states; ++s) pi[s] = next[s] / sum;
    converged = diff < 1e-14;
  }
  if (!converged) {
    return absl::FailedPreconditionError(absl::StrCat(
        "data.synthetic: the chain's stationary distribution did not converge "
        "in ",
        kMaxPowerIterations,
        " iterations; choose another data.synthetic.seed"));
  }
  c.stationary_ = pi;
  c.stationary_cumulative_.resize(states);
  double cum = 0, h = 0;
  for (int64_t s = 0; s < states; ++s) {
    cum += pi[s];
    c.stationary_cumulative_[s] = cum;
    double hs = 0;
    for (int i = 0; i < k; ++i) {
      const double p = probs[s * k + i];
      if (p > 0) hs -= p * std::log(p);
    }
    h += pi[s] * hs;
  }
  c.stationary_cumulative_.back() = 1.0;
  c.entropy_rate_nats_ = h;
  return c;
}

double SyntheticCorpus::TransitionProbability(int64_t state,
                                              int32_t token) const {
  const int k = branching_;
  for (int i = 0; i < k; ++i) {
    if (successors_[state * k + i] == token) {
      return cumulative_[state * k + i] -
             (i == 0 ? 0.0 : cumulative_[state * k + i - 1]);
    }
  }
  return 0.0;
}

void SyntheticCorpus::GenerateBlock(uint64_t stream, int64_t block,
                                    absl::Span<int32_t> out) const {
  CHECK_EQ(static_cast<int64_t>(out.size()), block_tokens_);
  Rng rng(BlockSeed(seed_, stream, block));
  const double u = rng.Uniform();
  int64_t state = std::upper_bound(stationary_cumulative_.begin(),
                                   stationary_cumulative_.end(), u) -
                  stationary_cumulative_.begin();
  state = std::min(state, num_states_ - 1);
  // The start state's tokens, oldest first.
  for (int i = order_ - 1, s = 0; i >= 0; --i, ++s) {
    int64_t t = state;
    for (int j = 0; j < i; ++j) t /= vocab_size_;
    out[s] = static_cast<int32_t>(t % vocab_size_);
  }
  const int k = branching_;
  for (int64_t n = order_; n < block_tokens_; ++n) {
    const double r = rng.Uniform();
    const double* cum = &cumulative_[state * k];
    int i = 0;
    while (i < k - 1 && r >= cum[i]) ++i;
    const int32_t token = successors_[state * k + i];
    out[n] = token;
    state = NextState(state, token);
  }
}

void SyntheticCorpus::Generate(uint64_t stream, int64_t offset,
                               absl::Span<int32_t> out) const {
  CHECK_GE(offset, 0);
  std::vector<int32_t> block(block_tokens_);
  size_t done = 0;
  while (done < out.size()) {
    const int64_t pos = offset + static_cast<int64_t>(done);
    const int64_t b = pos / block_tokens_;
    const int64_t within = pos % block_tokens_;
    GenerateBlock(stream, b, absl::MakeSpan(block));
    const size_t n =
        std::min<size_t>(out.size() - done, block_tokens_ - within);
    std::copy_n(block.begin() + within, n, out.begin() + done);
    done += n;
  }
}

std::string SyntheticCorpus::Describe() const {
  return absl::StrFormat(
      "synthetic Markov corpus: vocab %d, order %d, branching %d, seed %d; "
      "entropy rate %.6f nats/token (%.4f bits)",
      vocab_size_, order_, branching_, seed_, entropy_rate_nats_,
      entropy_rate_nats_ / std::log(2.0));
}

}  // namespace zt
