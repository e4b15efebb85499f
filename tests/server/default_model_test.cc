// The default-model lookup's search order, on a temporary tree (the binary need not exist: only its
// directory matters).
#include "server/default_model.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvserve::server {
namespace {

using ::testing::ElementsAre;

class DefaultModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::path(::testing::TempDir()) /
            absl::StrCat("default_model_test_", getpid(), "_",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_);
    binary_ = (root_ / "prefix/bin/kvserve").string();
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  // A directory that counts as a model: it holds a config.json.
  std::string MakeModel(const std::string& relative) {
    const std::filesystem::path dir = root_ / relative;
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "config.json") << "{}";
    return dir.string();
  }
  std::string Path(const std::string& relative) const { return (root_ / relative).string(); }

  std::filesystem::path root_;
  std::string binary_;
};

TEST_F(DefaultModelTest, SearchesEnvironmentThenInstalledThenBuildTree) {
  EXPECT_THAT(DefaultModelSearchPath(binary_, "/models/mine"),
              ElementsAre("/models/mine", Path("prefix/share/kvserve/models/default"),
                          Path("models/default")));
  // Unset or empty: only the two places beside the binary.
  EXPECT_THAT(DefaultModelSearchPath(binary_, nullptr),
              ElementsAre(Path("prefix/share/kvserve/models/default"), Path("models/default")));
  EXPECT_EQ(DefaultModelSearchPath(binary_, ""), DefaultModelSearchPath(binary_, nullptr));
}

TEST_F(DefaultModelTest, NothingFoundListsEverythingSearched) {
  const DefaultModelLookup lookup = FindDefaultModel(binary_, Path("nowhere").c_str());
  EXPECT_FALSE(lookup.dir.has_value());
  EXPECT_EQ(lookup.searched, DefaultModelSearchPath(binary_, Path("nowhere").c_str()));
}

TEST_F(DefaultModelTest, TheFirstCandidateWithAConfigWins) {
  const std::string build_tree = MakeModel("models/default");
  EXPECT_EQ(FindDefaultModel(binary_, nullptr).dir, build_tree);
  const std::string installed = MakeModel("prefix/share/kvserve/models/default");
  EXPECT_EQ(FindDefaultModel(binary_, nullptr).dir, installed);
  const std::string env = MakeModel("picked");
  EXPECT_EQ(FindDefaultModel(binary_, env.c_str()).dir, env);
}

TEST_F(DefaultModelTest, ADirectoryWithoutConfigJsonIsSkipped) {
  std::filesystem::create_directories(root_ / "prefix/share/kvserve/models/default");
  const std::string build_tree = MakeModel("models/default");
  EXPECT_EQ(FindDefaultModel(binary_, Path("missing").c_str()).dir, build_tree);
}

}  // namespace
}  // namespace kvserve::server
