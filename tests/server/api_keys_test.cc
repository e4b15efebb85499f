// ApiKeys (the keys-file format) and ApiKeyAuthenticator (bearer parsing, reload, cache salts)
// without a server; tests/server/auth_test.cc checks the same rules over gRPC.
#include "server/api_keys.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvserve::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kKeyA[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
constexpr char kKeyB[] = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
constexpr char kKeyC[] = "cccccccccccccccc";

TEST(ApiKeysTest, ReadsKeysTenantsCommentsAndBlankLines) {
  const std::string text = std::string("# keys of the staging cluster\n\n") + kKeyA + " acme\n" +
                           "   " + kKeyB + "\tacme  \n" + kKeyC + "\n";
  absl::StatusOr<ApiKeys> keys = ApiKeys::Parse(text, "keys.txt");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->num_keys(), 3);
  EXPECT_EQ(keys->FindTenant(kKeyA), "acme");
  EXPECT_EQ(keys->FindTenant(kKeyB), "acme");
  // A key without a tenant is a tenant of its own, named after its line.
  EXPECT_EQ(keys->FindTenant(kKeyC), "#5");
}

TEST(ApiKeysTest, FindsOnlyTheExactKey) {
  absl::StatusOr<ApiKeys> keys = ApiKeys::Parse(std::string(kKeyA) + " acme\n", "k");
  ASSERT_TRUE(keys.ok()) << keys.status();
  const std::string key = kKeyA;
  EXPECT_EQ(keys->FindTenant(key), "acme");
  EXPECT_EQ(keys->FindTenant(""), std::nullopt);
  EXPECT_EQ(keys->FindTenant(key.substr(0, key.size() - 1)), std::nullopt);  // a prefix
  EXPECT_EQ(keys->FindTenant(key + "a"), std::nullopt);                      // an extension
  EXPECT_EQ(keys->FindTenant("a"), std::nullopt);  // repeats to the key's length: still not it
  std::string last_differs = key;
  last_differs.back() = 'b';
  EXPECT_EQ(keys->FindTenant(last_differs), std::nullopt);
}

TEST(ApiKeysTest, RejectsMalformedLinesNamingTheFileAndLineButNeverTheKey) {
  struct Case {
    std::string text;
    std::string message;
  };
  const std::string short_key = "tooshort";
  const Case cases[] = {
      {"", "keys.txt: holds no key; every call would be refused"},
      {"# only a comment\n\n", "keys.txt: holds no key; every call would be refused"},
      {"\n" + short_key + "\n",
       "keys.txt:2: the key is 8 characters; keys have 16 to 512 (e.g. `openssl rand -hex 32`)"},
      {std::string(513, 'k') + "\n", "keys.txt:1: the key is 513 characters"},
      {std::string(kKeyA) + " acme extra\n",
       "keys.txt:1: expected 'KEY' or 'KEY TENANT', found more than two fields"},
      {std::string(kKeyA) + " ac/me\n", "keys.txt:1: tenant 'ac/me': use only [A-Za-z0-9._-]"},
      {std::string(kKeyA) + " " + std::string(129, 't') + "\n",
       "keys.txt:1: the tenant is longer than 128 characters"},
      {std::string(kKeyA) + "\n" + kKeyA + " other\n",
       "keys.txt:2: the key appears on an earlier line too"},
      {std::string(kKeyA) + "\x7f\n", "keys.txt:1: the key holds a character outside visible"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<ApiKeys> keys = ApiKeys::Parse(c.text, "keys.txt");
    ASSERT_FALSE(keys.ok()) << c.text;
    EXPECT_EQ(keys.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(keys.status().message(), HasSubstr(c.message));
    EXPECT_THAT(keys.status().message(), Not(HasSubstr(short_key)));
    EXPECT_THAT(keys.status().message(), Not(HasSubstr(kKeyA)));
  }
}

// A keys file in the test's temporary directory, written (and rewritten) by the test.
class ApiKeyAuthenticatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = ::testing::TempDir() + "/api_keys_test_" + std::to_string(getpid()) + ".txt";
  }
  void TearDown() override { std::remove(path_.c_str()); }

  // Writes a new file and renames it over the old one, as Kubernetes' symlink swap replaces a
  // mounted secret: the inode changes even when size and mtime do not.
  void WriteKeys(const std::string& text) {
    const std::string tmp = path_ + ".new";
    std::ofstream(tmp) << text;
    ASSERT_EQ(std::rename(tmp.c_str(), path_.c_str()), 0);
  }

  std::unique_ptr<ApiKeyAuthenticator> Create(bool share = false) {
    ApiKeyAuthenticator::Options options;
    options.keys_file = path_;
    options.reload_check_interval = absl::ZeroDuration();
    options.share_prefix_cache_across_tenants = share;
    absl::StatusOr<std::unique_ptr<ApiKeyAuthenticator>> auth =
        ApiKeyAuthenticator::Create(options);
    EXPECT_TRUE(auth.ok()) << auth.status();
    return auth.ok() ? *std::move(auth) : nullptr;
  }

  std::string path_;
};

TEST_F(ApiKeyAuthenticatorTest, AcceptsABearerKeyAndNamesWhatIsWrongOtherwise) {
  WriteKeys(std::string(kKeyA) + " acme\n");
  std::unique_ptr<ApiKeyAuthenticator> auth = Create();
  ASSERT_NE(auth, nullptr);
  EXPECT_EQ(auth->Authenticate("Bearer " + std::string(kKeyA)).value(), "acme");
  // The scheme is case-insensitive (RFC 7235) and may be followed by several spaces.
  EXPECT_EQ(auth->Authenticate("bearer   " + std::string(kKeyA)).value(), "acme");

  struct Case {
    std::optional<std::string> authorization;
    std::string message;
  };
  const Case cases[] = {
      {std::nullopt, "authorization: missing; send 'authorization: Bearer <API key>'"},
      {"", "authorization: expected 'Bearer <API key>'"},
      {kKeyA, "authorization: expected 'Bearer <API key>'"},
      {"Basic " + std::string(kKeyA), "authorization: expected 'Bearer <API key>'"},
      {"Bearer ", "authorization: unknown API key"},
      {"Bearer " + std::string(kKeyB), "authorization: unknown API key"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::string> tenant = c.authorization.has_value()
                                             ? auth->Authenticate(*c.authorization)
                                             : auth->Authenticate(std::nullopt);
    ASSERT_FALSE(tenant.ok()) << c.authorization.value_or("(none)");
    EXPECT_EQ(tenant.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(tenant.status().message(), c.message);
  }
}

TEST_F(ApiKeyAuthenticatorTest, ReloadsTheFileWhenItIsReplaced) {
  WriteKeys(std::string(kKeyA) + " acme\n");
  std::unique_ptr<ApiKeyAuthenticator> auth = Create();
  ASSERT_NE(auth, nullptr);
  EXPECT_TRUE(auth->Authenticate("Bearer " + std::string(kKeyA)).ok());
  EXPECT_EQ(auth->num_reloads(), 0);

  // Key A revoked, key B added with a new tenant.
  WriteKeys(std::string(kKeyB) + " globex\n");
  EXPECT_EQ(auth->Authenticate("Bearer " + std::string(kKeyA)).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth->Authenticate("Bearer " + std::string(kKeyB)).value(), "globex");
  EXPECT_EQ(auth->num_reloads(), 1);

  // A file that no longer parses leaves the keys in force.
  WriteKeys("short\n");
  EXPECT_EQ(auth->Authenticate("Bearer " + std::string(kKeyB)).value(), "globex");
  // ... and so does a file that is gone (mid-rotation).
  std::remove(path_.c_str());
  EXPECT_EQ(auth->Authenticate("Bearer " + std::string(kKeyB)).value(), "globex");
  EXPECT_EQ(auth->num_reloads(), 1);
  // Fixed again: loaded.
  WriteKeys(std::string(kKeyA) + " acme\n" + kKeyC + " initech\n");
  EXPECT_EQ(auth->Authenticate("Bearer " + std::string(kKeyC)).value(), "initech");
  EXPECT_EQ(auth->num_keys(), 2);
  EXPECT_EQ(auth->num_reloads(), 2);
}

TEST_F(ApiKeyAuthenticatorTest, CreateNamesTheFlagAndTheProblem) {
  ApiKeyAuthenticator::Options options;
  options.keys_file = path_ + ".missing";
  absl::StatusOr<std::unique_ptr<ApiKeyAuthenticator>> auth = ApiKeyAuthenticator::Create(options);
  ASSERT_FALSE(auth.ok());
  EXPECT_EQ(auth.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(auth.status().message(), HasSubstr("--api-keys-file " + options.keys_file));

  // A FIFO would block a plain open() forever; it is refused instead.
  const std::string fifo = path_ + ".fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  options.keys_file = fifo;
  auth = ApiKeyAuthenticator::Create(options);
  std::remove(fifo.c_str());
  ASSERT_FALSE(auth.ok());
  EXPECT_THAT(auth.status().message(), HasSubstr("not a regular file"));

  options.keys_file = "/dev/zero";
  auth = ApiKeyAuthenticator::Create(options);
  ASSERT_FALSE(auth.ok());
  EXPECT_THAT(auth.status().message(), HasSubstr("not a regular file"));
}

TEST_F(ApiKeyAuthenticatorTest, CacheSaltSeparatesTenantsUnlessSharingIsChosen) {
  WriteKeys(std::string(kKeyA) + " acme\n");
  std::unique_ptr<ApiKeyAuthenticator> isolated = Create(/*share=*/false);
  std::unique_ptr<ApiKeyAuthenticator> shared = Create(/*share=*/true);
  ASSERT_NE(isolated, nullptr);
  ASSERT_NE(shared, nullptr);
  EXPECT_NE(isolated->CacheSalt("acme", ""), isolated->CacheSalt("globex", ""));
  EXPECT_EQ(isolated->CacheSalt("acme", "x"), isolated->CacheSalt("acme", "x"));
  EXPECT_NE(isolated->CacheSalt("acme", ""), isolated->CacheSalt("acme", "x"));
  // No tenant can pick a client salt that lands in another tenant's cache.
  EXPECT_NE(isolated->CacheSalt("ab", "c"), isolated->CacheSalt("a", "bc"));
  EXPECT_NE(isolated->CacheSalt("acme", ""), "");
  EXPECT_EQ(shared->CacheSalt("acme", "x"), "x");
  EXPECT_EQ(shared->CacheSalt("globex", ""), "");
}

}  // namespace
}  // namespace kvserve::server
