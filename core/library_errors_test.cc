#include "core/library_errors.h"

#include <mpi.h>

#include "gtest/gtest.h"

namespace zt {
namespace {

absl::Status CallMpi(int code) {
  ZT_MPI_RETURN_IF_ERROR(code);
  return absl::OkStatus();
}

TEST(LibraryErrorsTest, MpiSuccessIsOk) { EXPECT_TRUE(CallMpi(MPI_SUCCESS).ok()); }

TEST(LibraryErrorsTest, MpiErrorNamesLibraryCallSiteAndMessage) {
  const absl::Status s = CallMpi(MPI_ERR_COMM);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  const std::string msg(s.message());
  EXPECT_NE(msg.find("MPI error"), std::string::npos) << msg;
  EXPECT_NE(msg.find("library_errors_test.cc:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("`code`"), std::string::npos) << msg;
  // MPI's own text for MPI_ERR_COMM mentions the communicator.
  EXPECT_NE(msg.find("communicator"), std::string::npos) << msg;
}

}  // namespace
}  // namespace zt

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  const int result = RUN_ALL_TESTS();
  MPI_Finalize();
  return result;
}
