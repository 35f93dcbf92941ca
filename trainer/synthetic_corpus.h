#ifndef ZEROTRAIN_TRAINER_SYNTHETIC_CORPUS_H_
#define ZEROTRAIN_TRAINER_SYNTHETIC_CORPUS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "trainer/config.pb.h"

namespace zt {

// A seeded random Markov source of order k over tokens 0..V-1 whose entropy
// rate is known exactly, so a model's loss has a floor to approach.
//
// The state is the last k tokens (V^k states). Each state has `branching`
// distinct successor tokens, drawn uniformly, with probabilities drawn from
// a flat Dirichlet. The stationary distribution pi is computed by power
// iteration on the lazy chain (P + I) / 2, which has the same stationary
// distributions as P and converges even when P is periodic; if P happens to
// be reducible, pi is the one the stream is sampled from, so the entropy
// rate below is still the stream's. Entropy rate:
//   H = sum_s pi(s) * H(P(. | s))   [nats/token]
// which is H(X_t+1 | X_0..X_t) at every t of a chain started from pi.
//
// Streams: the source yields independent, endless token streams (training
// reads stream kTrainStream, evaluation kEvalStream). Each stream is cut
// into blocks of block_tokens tokens; a block starts at a state drawn from
// pi (its first k tokens) and then follows the chain, with randomness
// seeded by (seed, stream, block). Any offset is therefore reachable in
// O(block_tokens) time, and the same (seed, stream, offset) always yields
// the same tokens.
class SyntheticCorpus {
 public:
  static constexpr uint64_t kTrainStream = 0;
  static constexpr uint64_t kEvalStream = 1;

  // kInvalidArgument naming the data.synthetic.* field when a setting is out
  // of range; kFailedPrecondition if the stationary distribution does not
  // converge (try another seed).
  static absl::StatusOr<SyntheticCorpus> Create(
      const SyntheticCorpusConfig& config);

  int32_t vocab_size() const { return vocab_size_; }
  int32_t order() const { return order_; }
  int32_t branching() const { return branching_; }
  int64_t num_states() const { return num_states_; }
  int64_t block_tokens() const { return block_tokens_; }

  // Exact entropy rate of the chain, nats per token.
  double entropy_rate_nats() const { return entropy_rate_nats_; }

  // Stationary probability of each state; a state packs the last k tokens
  // base V, oldest most significant.
  const std::vector<double>& stationary() const { return stationary_; }

  // P(next token = `token` | state).
  double TransitionProbability(int64_t state, int32_t token) const;

  // The state after `state` emits `token`.
  int64_t NextState(int64_t state, int32_t token) const {
    return (state * vocab_size_ + token) % num_states_;
  }

  // Tokens [offset, offset + out.size()) of `stream`.
  void Generate(uint64_t stream, int64_t offset, absl::Span<int32_t> out) const;

  // Block `block` of `stream`; out.size() must be block_tokens().
  void GenerateBlock(uint64_t stream, int64_t block,
                     absl::Span<int32_t> out) const;

  // One line for logs: settings and the entropy rate in nats and bits.
  std::string Describe() const;

 private:
  SyntheticCorpus() = default;

  int32_t vocab_size_ = 0;
  int32_t order_ = 0;
  int32_t branching_ = 0;
  int64_t num_states_ = 0;
  int64_t block_tokens_ = 0;
  uint64_t seed_ = 0;
  // Per state s, entries [s * branching, (s + 1) * branching): successor
  // tokens and their cumulative probabilities (last one exactly 1).
  std::vector<int32_t> successors_;
  std::vector<double> cumulative_;
  std::vector<double> stationary_;
  std::vector<double> stationary_cumulative_;
  double entropy_rate_nats_ = 0;
};

}  // namespace zt

#endif  // ZEROTRAIN_TRAINER_SYNTHETIC_CORPUS_H_
