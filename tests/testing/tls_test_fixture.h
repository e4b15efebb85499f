// A gtest fixture for tests of TLS listeners: one set of throwaway certificates per suite
// (tests/testing/test_certificates.h; openssl takes a while), and server-1's pair in
// serving.{crt,key} at the start of every test, so each test starts from the same certificate
// whatever the one before it rotated to.
//
// Thread-safety: gtest's test thread only.
#ifndef KVSERVE_TESTS_TESTING_TLS_TEST_FIXTURE_H_
#define KVSERVE_TESTS_TESTING_TLS_TEST_FIXTURE_H_

#include <memory>

#include "gtest/gtest.h"
#include "tests/testing/test_certificates.h"

namespace kvserve::testing {

class TlsTestFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<TestCertificates>> certs =
        TestCertificates::Make(::testing::TempDir());
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = certs->release();
  }
  static void TearDownTestSuite() {
    delete certs_;
    certs_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(certs_, nullptr);
    ASSERT_TRUE(certs_->Serve("server-1").ok());
  }

  static inline TestCertificates* certs_ = nullptr;
};

}  // namespace kvserve::testing

#endif  // KVSERVE_TESTS_TESTING_TLS_TEST_FIXTURE_H_
