// Throwaway X.509 material for TLS tests, made by the openssl command at test time so that no
// private key is committed and nothing in the tree expires.
//
// One directory of PEM files: ca.{crt,key}; server-1, server-2 and client, signed by ca (CN = their
// name, subjectAltName localhost and 127.0.0.1); stranger, signed by another CA. EC P-256 keys
// (quick to make). The directory is removed with the object.
//
// Thread-safety: not thread-safe; one test thread uses it.
#ifndef KVSERVE_TESTS_TESTING_TEST_CERTIFICATES_H_
#define KVSERVE_TESTS_TESTING_TEST_CERTIFICATES_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace kvserve::testing {

class TestCertificates {
 public:
  // Makes the files under `parent_dir`. Errors: INTERNAL when openssl fails or is missing
  // (scripts/install-deps.sh test installs it).
  static absl::StatusOr<std::unique_ptr<TestCertificates>> Make(const std::string& parent_dir);
  ~TestCertificates();

  std::string Path(const std::string& file) const { return dir_ + "/" + file; }
  std::string Pem(const std::string& file) const;

  // Makes `name`'s pair the one in serving.{key,crt}, each file replaced by a rename.
  absl::Status Serve(const std::string& name) const;

 private:
  explicit TestCertificates(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

}  // namespace kvserve::testing

#endif  // KVSERVE_TESTS_TESTING_TEST_CERTIFICATES_H_
