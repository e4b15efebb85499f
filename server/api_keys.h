// API-key authentication and the tenant policy of the prefix cache (docs/security.md).
//
// The keys file (--api-keys-file) holds one key per line, optionally followed by the key's tenant:
//
//   # comment lines and blank lines are ignored
//   3f9c0a7e5d1b4c2a8e6f0d9b7a5c3e1f        <- a key of its own tenant, named "#2" (its line)
//   c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6 acme   <- a key of tenant "acme" (several keys may share one)
//
// A key is 16 to 512 visible ASCII characters (0x21-0x7E, e.g. `openssl rand -hex 32`); a tenant
// is 1 to 128 of [A-Za-z0-9._-]. Clients send `authorization: Bearer <key>` (gRPC metadata or the
// HTTP header of the same name).
//
// Tenant isolation: when keys are in use, requests of different tenants never share prefix-cache
// blocks. The engine shares blocks only between requests of equal cache_salt, so the tenant is
// folded into every request's salt (CacheSalt); a client's own cache_salt still splits its
// tenant's cache further but can never reach another tenant's. Sharing across tenants is an
// explicit opt-in (ApiKeyAuthenticator::Options::share_prefix_cache_across_tenants).
//
// Nothing here depends on gRPC: the gRPC service and an HTTP front end authenticate with the same
// object and the same rules.
#ifndef KVSERVE_SERVER_API_KEYS_H_
#define KVSERVE_SERVER_API_KEYS_H_

#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace kvserve::server {

// The parsed keys file: an immutable set of (key, tenant). Thread-safe (immutable).
class ApiKeys {
 public:
  // Parses the file format above. Errors are INVALID_ARGUMENT naming `source` and the line (never
  // the key itself, which may be a real secret on a wrong line).
  static absl::StatusOr<ApiKeys> Parse(std::string_view text, std::string_view source);

  // The tenant `key` belongs to, or nullopt. Runs in time that depends on the stored keys (their
  // number and lengths) and not on the bytes of `key`: every stored key is compared in full, with
  // no early exit, so the time of a guess reveals nothing about how much of it was right.
  std::optional<std::string> FindTenant(std::string_view key) const;

  int num_keys() const { return static_cast<int>(entries_.size()); }

 private:
  struct Entry {
    std::string key;
    std::string tenant;
  };
  std::vector<Entry> entries_;
};

// Checks `authorization` values against the keys file and reloads the file when it changes.
// Thread-safe: Authenticate may be called from any number of threads at once.
class ApiKeyAuthenticator {
 public:
  struct Options {
    std::string keys_file;
    // How often Authenticate looks at the file's identity (inode, size, mtime) to reload it; zero
    // looks on every call (tests). Kubernetes replaces a mounted secret by swapping a symlink,
    // which changes the inode.
    absl::Duration reload_check_interval = absl::Seconds(5);
    // Let all tenants share prefix-cache blocks (only a client's explicit cache_salt separates
    // them), as when no keys are configured. Off: each tenant has a cache of its own.
    bool share_prefix_cache_across_tenants = false;
  };

  // Reads and parses the keys file. Errors name the file (NOT_FOUND, INVALID_ARGUMENT, ...).
  static absl::StatusOr<std::unique_ptr<ApiKeyAuthenticator>> Create(const Options& options);

  // `authorization` is the value of the caller's authorization header or metadata, nullopt when
  // absent. Returns the caller's tenant, or UNAUTHENTICATED saying what is wrong (the key itself
  // is never echoed). A changed keys file is reloaded first (see Options); a file that no longer
  // parses is logged and the keys loaded before stay in force.
  absl::StatusOr<std::string> Authenticate(std::optional<std::string_view> authorization);

  // The cache_salt a request of `tenant` runs with, given the salt the client sent. Injective in
  // (tenant, client_salt), so no tenant can name another's salt.
  std::string CacheSalt(std::string_view tenant, std::string_view client_salt) const;

  int num_keys() const;
  // How many times the file was reloaded after Create (successfully).
  int64_t num_reloads() const;

 private:
  struct FileIdentity {
    uint64_t device = 0;
    uint64_t inode = 0;
    int64_t size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const FileIdentity&) const = default;
  };
  static FileIdentity IdentityOf(const struct stat& st);
  static absl::StatusOr<std::pair<FileIdentity, ApiKeys>> Load(const std::string& path);

  explicit ApiKeyAuthenticator(const Options& options) : options_(options) {}
  // Returns the keys in force, reloading them first when the file changed.
  std::shared_ptr<const ApiKeys> CurrentKeys();

  const Options options_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const ApiKeys> keys_ ABSL_GUARDED_BY(mu_);
  FileIdentity identity_ ABSL_GUARDED_BY(mu_);
  absl::Time last_check_ ABSL_GUARDED_BY(mu_);
  int64_t num_reloads_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_API_KEYS_H_
