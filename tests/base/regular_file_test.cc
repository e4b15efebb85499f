#include "base/regular_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvserve::base {
namespace {

using ::testing::HasSubstr;

std::string FreshDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/kvserve_regular_file_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

TEST(RegularFileTest, ReadsAFileUpToAndIncludingTheCap) {
  const std::string dir = FreshDir("read");
  std::ofstream(dir + "/f") << "0123456789";
  absl::StatusOr<std::string> text = ReadRegularFile(dir + "/f", 10);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "0123456789");
  std::ofstream(dir + "/empty").flush();
  EXPECT_EQ(ReadRegularFile(dir + "/empty", 10).value(), "");
}

TEST(RegularFileTest, RefusesAFileOverTheCapNamingIt) {
  const std::string dir = FreshDir("cap");
  std::ofstream(dir + "/f") << "0123456789";
  absl::StatusOr<std::string> text = ReadRegularFile(dir + "/f", 9, "f.json");
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(text.status().message(),
            "f.json: 10 bytes, more than the 9 bytes allowed for this file");
}

TEST(RegularFileTest, RefusesFifosDevicesAndDirectoriesWithoutBlocking) {
  const std::string dir = FreshDir("kinds");
  ASSERT_EQ(::mkfifo((dir + "/fifo").c_str(), 0600), 0) << std::strerror(errno);
  // No writer ever opens the FIFO: a blocking open would never return.
  EXPECT_EQ(ReadRegularFile(dir + "/fifo", 100).status().message(),
            dir + "/fifo: not a regular file (a FIFO)");
  std::filesystem::create_symlink("/dev/zero", dir + "/zero");
  EXPECT_EQ(ReadRegularFile(dir + "/zero", 100).status().message(),
            dir + "/zero: not a regular file (a character device)");
  EXPECT_EQ(RegularFile::Open(dir).status().message(), dir + ": not a regular file (a directory)");
}

TEST(RegularFileTest, FollowsASymlinkToARegularFile) {
  const std::string dir = FreshDir("symlink");
  std::ofstream(dir + "/target") << "x";
  std::filesystem::create_symlink(dir + "/target", dir + "/link");
  EXPECT_EQ(ReadRegularFile(dir + "/link", 1).value(), "x");
}

TEST(RegularFileTest, AMissingFileIsNotFound) {
  absl::Status status = ReadRegularFile("/nonexistent/kvserve/f", 1, "f.json").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("f.json: cannot open"));
}

}  // namespace
}  // namespace kvserve::base
