#include "server/api_keys.h"

#include <sys/stat.h>

#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/logging.h"
#include "base/regular_file.h"

namespace kvserve::server {

namespace {

constexpr size_t kMinKeyLength = 16;
constexpr size_t kMaxKeyLength = 512;
constexpr size_t kMaxTenantLength = 128;
// A keys file of a million bytes holds thousands of keys; anything larger is a wrong path.
constexpr int64_t kMaxKeysFileBytes = 1 << 20;

bool IsKeyChar(char c) { return c >= 0x21 && c <= 0x7E; }

bool IsTenantChar(char c) { return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-'; }

// Equal iff the two are; the loop runs over `stored` only and never exits early, so its time does
// not depend on the content of `presented` (the attacker's guess).
bool ConstantTimeEquals(std::string_view stored, std::string_view presented) {
  unsigned char diff = stored.size() != presented.size() ? 1 : 0;
  const size_t n = presented.size();
  for (size_t i = 0; i < stored.size(); ++i) {
    const unsigned char p = n == 0 ? 0 : static_cast<unsigned char>(presented[i % n]);
    diff |= static_cast<unsigned char>(stored[i]) ^ p;
  }
  return diff == 0;
}

}  // namespace

absl::StatusOr<ApiKeys> ApiKeys::Parse(std::string_view text, std::string_view source_view) {
  const std::string source(source_view);
  ApiKeys keys;
  absl::flat_hash_set<std::string> seen;
  int line_number = 0;
  // absl::string_view: Debian's Abseil is built with a string_view of its own.
  for (absl::string_view line : absl::StrSplit(absl::string_view(text.data(), text.size()), '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    const std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    auto error = [&](const std::string& what) {
      return absl::InvalidArgumentError(absl::StrCat(source, ":", line_number, ": ", what));
    };
    if (fields.size() > 2) {
      return error("expected 'KEY' or 'KEY TENANT', found more than two fields");
    }
    const std::string key(fields[0]);
    if (key.size() < kMinKeyLength || key.size() > kMaxKeyLength) {
      return error(absl::StrCat("the key is ", key.size(), " characters; keys have ", kMinKeyLength,
                                " to ", kMaxKeyLength, " (e.g. `openssl rand -hex 32`)"));
    }
    for (char c : key) {
      if (!IsKeyChar(c)) return error("the key holds a character outside visible ASCII");
    }
    std::string tenant = absl::StrCat("#", line_number);
    if (fields.size() == 2) {
      if (fields[1].size() > kMaxTenantLength) {
        return error(absl::StrCat("the tenant is longer than ", kMaxTenantLength, " characters"));
      }
      for (char c : fields[1]) {
        if (!IsTenantChar(c)) {
          return error(absl::StrCat("tenant '", fields[1], "': use only [A-Za-z0-9._-]"));
        }
      }
      tenant = std::string(fields[1]);
    }
    if (!seen.insert(key).second) return error("the key appears on an earlier line too");
    keys.entries_.push_back({key, std::move(tenant)});
  }
  if (keys.entries_.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": holds no key; every call would be refused"));
  }
  return keys;
}

std::optional<std::string> ApiKeys::FindTenant(std::string_view key) const {
  // Visit every entry whatever matched, so the position of the match does not show in the time.
  const Entry* match = nullptr;
  for (const Entry& entry : entries_) {
    const bool equal = ConstantTimeEquals(entry.key, key);
    match = equal ? &entry : match;
  }
  if (match == nullptr) return std::nullopt;
  return match->tenant;
}

ApiKeyAuthenticator::FileIdentity ApiKeyAuthenticator::IdentityOf(const struct stat& st) {
  return {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
          static_cast<int64_t>(st.st_size),
          static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

absl::StatusOr<std::pair<ApiKeyAuthenticator::FileIdentity, ApiKeys>> ApiKeyAuthenticator::Load(
    const std::string& path) {
  struct stat st;
  absl::StatusOr<std::string> text = base::ReadRegularFile(path, kMaxKeysFileBytes, {}, &st);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat("--api-keys-file ", text.status().message()));
  }
  absl::StatusOr<ApiKeys> keys = ApiKeys::Parse(*text, absl::StrCat("--api-keys-file ", path));
  if (!keys.ok()) return keys.status();
  return std::make_pair(IdentityOf(st), *std::move(keys));
}

absl::StatusOr<std::unique_ptr<ApiKeyAuthenticator>> ApiKeyAuthenticator::Create(
    const Options& options) {
  absl::StatusOr<std::pair<FileIdentity, ApiKeys>> loaded = Load(options.keys_file);
  if (!loaded.ok()) return loaded.status();
  std::unique_ptr<ApiKeyAuthenticator> authenticator(new ApiKeyAuthenticator(options));
  absl::MutexLock lock(&authenticator->mu_);
  authenticator->identity_ = loaded->first;
  authenticator->keys_ = std::make_shared<const ApiKeys>(std::move(loaded->second));
  authenticator->last_check_ = absl::Now();
  return authenticator;
}

std::shared_ptr<const ApiKeys> ApiKeyAuthenticator::CurrentKeys() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  if (now - last_check_ < options_.reload_check_interval) return keys_;
  last_check_ = now;
  struct stat st;
  if (stat(options_.keys_file.c_str(), &st) != 0) {
    // Mid-rotation or removed: keep the keys in force rather than lock every client out.
    return keys_;
  }
  const FileIdentity seen{
      static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
      static_cast<int64_t>(st.st_size),
      static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
  if (seen == identity_) return keys_;
  absl::StatusOr<std::pair<FileIdentity, ApiKeys>> loaded = Load(options_.keys_file);
  if (!loaded.ok()) {
    KV_LOG(ERROR) << "keeping the API keys loaded before: " << loaded.status().message();
    identity_ = seen;  // report a broken file once, not on every call
    return keys_;
  }
  identity_ = loaded->first;
  keys_ = std::make_shared<const ApiKeys>(std::move(loaded->second));
  ++num_reloads_;
  KV_LOG(INFO) << "reloaded " << keys_->num_keys() << " API key(s) from " << options_.keys_file;
  return keys_;
}

absl::StatusOr<std::string> ApiKeyAuthenticator::Authenticate(
    std::optional<std::string_view> authorization) {
  if (!authorization.has_value()) {
    return absl::UnauthenticatedError(
        "authorization: missing; send 'authorization: Bearer <API key>'");
  }
  // RFC 7235: the scheme is case-insensitive and followed by one or more spaces.
  constexpr std::string_view kScheme = "bearer ";
  std::string_view value = *authorization;
  if (value.size() < kScheme.size() ||
      !absl::EqualsIgnoreCase(absl::string_view(value.data(), kScheme.size()),
                              absl::string_view(kScheme.data(), kScheme.size()))) {
    return absl::UnauthenticatedError("authorization: expected 'Bearer <API key>'");
  }
  value.remove_prefix(kScheme.size());
  while (!value.empty() && (value.front() == ' ' || value.back() == ' ')) {
    value = value.front() == ' ' ? value.substr(1) : value.substr(0, value.size() - 1);
  }
  std::optional<std::string> tenant = CurrentKeys()->FindTenant(value);
  if (!tenant.has_value()) return absl::UnauthenticatedError("authorization: unknown API key");
  return *std::move(tenant);
}

std::string ApiKeyAuthenticator::CacheSalt(std::string_view tenant,
                                           std::string_view client_salt) const {
  if (options_.share_prefix_cache_across_tenants) return std::string(client_salt);
  // The length prefix makes the pair recoverable from the salt: ("ab", "c") != ("a", "bc").
  return absl::StrCat("tenant:", tenant.size(), ":", std::string(tenant), ":",
                      std::string(client_salt));
}

int ApiKeyAuthenticator::num_keys() const {
  absl::MutexLock lock(&mu_);
  return keys_->num_keys();
}

int64_t ApiKeyAuthenticator::num_reloads() const {
  absl::MutexLock lock(&mu_);
  return num_reloads_;
}

}  // namespace kvserve::server
