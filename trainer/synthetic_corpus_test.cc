#include "trainer/synthetic_corpus.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_format.h"
#include "glog/logging.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace zt {
namespace {

using ::testing::HasSubstr;

SyntheticCorpusConfig Config(int vocab, int order, int branching,
                             uint64_t seed = 1, int64_t block = 65536) {
  SyntheticCorpusConfig c;
  c.set_vocab_size(vocab);
  c.set_order(order);
  c.set_branching(branching);
  c.set_seed(seed);
  c.set_block_tokens(block);
  return c;
}

SyntheticCorpus MustCreate(const SyntheticCorpusConfig& config) {
  absl::StatusOr<SyntheticCorpus> c = SyntheticCorpus::Create(config);
  CHECK(c.ok()) << c.status();
  return *std::move(c);
}

// Plug-in estimate of H(X_t+1 | state_t) from transition counts, skipping
// the first `order` tokens of every block (they start the chain afresh).
double EmpiricalEntropyRate(const SyntheticCorpus& c,
                            const std::vector<int32_t>& tokens) {
  absl::flat_hash_map<int64_t, absl::flat_hash_map<int32_t, int64_t>> counts;
  absl::flat_hash_map<int64_t, int64_t> state_counts;
  int64_t total = 0;
  for (size_t n = 0; n < tokens.size(); ++n) {
    const int64_t within = n % c.block_tokens();
    if (within < c.order()) continue;
    int64_t state = 0;
    for (int j = c.order(); j >= 1; --j) {
      state = state * c.vocab_size() + tokens[n - j];
    }
    ++counts[state][tokens[n]];
    ++state_counts[state];
    ++total;
  }
  double h = 0;
  for (const auto& [state, next] : counts) {
    for (const auto& [token, n] : next) {
      h -= static_cast<double>(n) / total *
           std::log(static_cast<double>(n) / state_counts[state]);
    }
  }
  return h;
}

TEST(SyntheticCorpusTest, StationaryDistributionIsAFixedPoint) {
  const SyntheticCorpus c = MustCreate(Config(32, 2, 3));
  const std::vector<double>& pi = c.stationary();
  std::vector<double> next(c.num_states(), 0.0);
  for (int64_t s = 0; s < c.num_states(); ++s) {
    for (int32_t t = 0; t < c.vocab_size(); ++t) {
      next[c.NextState(s, t)] += pi[s] * c.TransitionProbability(s, t);
    }
  }
  double residual = 0, sum = 0;
  for (int64_t s = 0; s < c.num_states(); ++s) {
    residual += std::abs(next[s] - pi[s]);
    sum += pi[s];
  }
  EXPECT_NEAR(sum, 1.0, 1e-12);
  EXPECT_LT(residual, 1e-12);
}

TEST(SyntheticCorpusTest, TransitionRowsSumToOneOverBranchingTokens) {
  const SyntheticCorpus c = MustCreate(Config(16, 1, 5));
  for (int64_t s = 0; s < c.num_states(); ++s) {
    double total = 0;
    int support = 0;
    for (int32_t t = 0; t < c.vocab_size(); ++t) {
      const double p = c.TransitionProbability(s, t);
      total += p;
      support += p > 0;
    }
    EXPECT_NEAR(total, 1.0, 1e-12) << "state " << s;
    EXPECT_EQ(support, 5) << "state " << s;
  }
}

TEST(SyntheticCorpusTest, EntropyRateIsBelowLogBranching) {
  const SyntheticCorpus c = MustCreate(Config(64, 1, 4));
  EXPECT_GT(c.entropy_rate_nats(), 0.3);
  EXPECT_LT(c.entropy_rate_nats(), std::log(4.0));
}

TEST(SyntheticCorpusTest, EmpiricalEntropyOfLongSampleMatchesAnalyticOrder1) {
  const SyntheticCorpus c = MustCreate(Config(64, 1, 4));
  std::vector<int32_t> tokens(2000000);
  c.Generate(SyntheticCorpus::kTrainStream, 0, absl::MakeSpan(tokens));
  // The plug-in estimate is biased low by about (states * (branching - 1)) /
  // (2 N) = 5e-5 nats; sampling noise is of the same order.
  EXPECT_NEAR(EmpiricalEntropyRate(c, tokens), c.entropy_rate_nats(), 2e-3);
}

TEST(SyntheticCorpusTest, EmpiricalEntropyOfLongSampleMatchesAnalyticOrder2) {
  const SyntheticCorpus c = MustCreate(Config(16, 2, 3, /*seed=*/7));
  std::vector<int32_t> tokens(2000000);
  c.Generate(SyntheticCorpus::kEvalStream, 12345, absl::MakeSpan(tokens));
  EXPECT_NEAR(EmpiricalEntropyRate(c, tokens), c.entropy_rate_nats(), 3e-3);
}

TEST(SyntheticCorpusTest, TokensAreInVocabAndFollowTheChain) {
  const SyntheticCorpus c = MustCreate(Config(64, 1, 4, 3, 1000));
  std::vector<int32_t> tokens(5000);
  c.Generate(0, 0, absl::MakeSpan(tokens));
  for (size_t n = 0; n < tokens.size(); ++n) {
    ASSERT_GE(tokens[n], 0);
    ASSERT_LT(tokens[n], 64);
    if (n % 1000 == 0) continue;  // a block start
    EXPECT_GT(c.TransitionProbability(tokens[n - 1], tokens[n]), 0)
        << "position " << n;
  }
}

TEST(SyntheticCorpusTest, SameSeedSameTokensDifferentSeedOrStreamDiffers) {
  const SyntheticCorpus a = MustCreate(Config(64, 1, 4, 11));
  const SyntheticCorpus b = MustCreate(Config(64, 1, 4, 11));
  const SyntheticCorpus other = MustCreate(Config(64, 1, 4, 12));
  std::vector<int32_t> ta(4096), tb(4096), tother(4096), teval(4096);
  a.Generate(0, 100, absl::MakeSpan(ta));
  b.Generate(0, 100, absl::MakeSpan(tb));
  other.Generate(0, 100, absl::MakeSpan(tother));
  a.Generate(1, 100, absl::MakeSpan(teval));
  EXPECT_EQ(ta, tb);
  EXPECT_EQ(a.entropy_rate_nats(), b.entropy_rate_nats());
  EXPECT_NE(ta, tother);
  EXPECT_NE(a.entropy_rate_nats(), other.entropy_rate_nats());
  EXPECT_NE(ta, teval);
}

TEST(SyntheticCorpusTest, AnyOffsetEqualsTheSliceOfALongerRead) {
  const SyntheticCorpus c = MustCreate(Config(32, 2, 4, 5, 777));
  std::vector<int32_t> all(5000);
  c.Generate(0, 0, absl::MakeSpan(all));
  for (int64_t offset : {0, 1, 776, 777, 778, 2000, 3100}) {
    std::vector<int32_t> part(1500);
    c.Generate(0, offset, absl::MakeSpan(part));
    EXPECT_TRUE(std::equal(part.begin(), part.end(), all.begin() + offset))
        << "offset " << offset;
  }
}

TEST(SyntheticCorpusTest, OutOfRangeSettingsNameTheField) {
  absl::StatusOr<SyntheticCorpus> c =
      SyntheticCorpus::Create(Config(64, 1, 65));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("data.synthetic.branching = 65 is out of range: must "
                        "be in [2, vocab_size = 64]"));
  c = SyntheticCorpus::Create(Config(64, 4, 4));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("data.synthetic.order = 4"));
  c = SyntheticCorpus::Create(Config(1024, 2, 4));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("<= 65536 states"));
}

TEST(SyntheticCorpusTest, DescribePrintsEntropyInNats) {
  const SyntheticCorpus c = MustCreate(Config(64, 1, 4));
  EXPECT_THAT(c.Describe(), HasSubstr("nats/token"));
  EXPECT_THAT(c.Describe(),
              HasSubstr(absl::StrFormat("%.6f", c.entropy_rate_nats())));
}

}  // namespace
}  // namespace zt
