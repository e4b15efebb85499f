#include "tests/testing/test_certificates.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace kvserve::testing {

absl::StatusOr<std::unique_ptr<TestCertificates>> TestCertificates::Make(
    const std::string& parent_dir) {
  static std::atomic<int> counter{0};
  const std::string dir = absl::StrCat(parent_dir, "/certs_", getpid(), "_", counter.fetch_add(1));
  const std::string script = absl::StrCat(
      "set -e; rm -rf '", dir, "'; mkdir -p '", dir, "'; cd '", dir, "'\n",
      "key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1.key; }\n",
      "ca() { key $1; openssl req -x509 -new -key $1.key -out $1.crt -days 2 -subj /CN=$1; }\n",
      "sign() {  # name ca\n", "  key $1\n",
      "  openssl req -new -key $1.key -out $1.csr -subj /CN=$1\n",
      "  openssl x509 -req -in $1.csr -CA $2.crt -CAkey $2.key -CAcreateserial -days 2 ",
      "-extfile san.ext -out $1.crt 2>/dev/null\n", "}\n",
      "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext\n", "ca ca; ca other-ca\n",
      "sign server-1 ca; sign server-2 ca; sign client ca; sign stranger other-ca\n");
  const std::string script_path = dir + ".sh";
  std::ofstream(script_path) << script;
  const int rc = std::system(absl::StrCat("bash '", script_path, "' >/dev/null 2>&1").c_str());
  std::remove(script_path.c_str());
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("openssl could not make the test certificates in ", dir,
                     " (is the openssl command installed? scripts/install-deps.sh test)"));
  }
  return std::unique_ptr<TestCertificates>(new TestCertificates(dir));
}

TestCertificates::~TestCertificates() {
  (void)std::system(absl::StrCat("rm -rf '", dir_, "'").c_str());
}

std::string TestCertificates::Pem(const std::string& file) const {
  std::ifstream in(Path(file));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::Status TestCertificates::Serve(const std::string& name) const {
  for (const char* ext : {".key", ".crt"}) {
    const std::string tmp = Path(std::string("serving.tmp") + ext);
    std::ofstream(tmp) << Pem(name + ext);
    if (std::rename(tmp.c_str(), Path(std::string("serving") + ext).c_str()) != 0) {
      return absl::InternalError(absl::StrCat("cannot rename ", tmp));
    }
  }
  return absl::OkStatus();
}

}  // namespace kvserve::testing
