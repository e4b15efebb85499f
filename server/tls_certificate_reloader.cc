#include "server/tls_certificate_reloader.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/logging.h"

namespace kvserve::server {

namespace {

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct ChainFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};
struct StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};

// Every certificate in `pem`, in order. INVALID_ARGUMENT naming `flag` when there is none or one
// does not parse.
absl::StatusOr<std::unique_ptr<STACK_OF(X509), ChainFree>> ParseCertificates(
    const std::string& pem, const char* flag, const std::string& path) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::unique_ptr<STACK_OF(X509), ChainFree> certs(sk_X509_new_null());
  if (bio == nullptr || certs == nullptr) return absl::ResourceExhaustedError("OpenSSL: no memory");
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    sk_X509_push(certs.get(), cert);
  }
  // The loop ends with "no start line" at the end of the text; anything else is a broken block.
  const unsigned long error = ERR_peek_last_error();
  ERR_clear_error();
  if (sk_X509_num(certs.get()) == 0 ||
      (error != 0 && ERR_GET_REASON(error) != PEM_R_NO_START_LINE)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": OpenSSL cannot parse its certificates"));
  }
  return certs;
}

}  // namespace

struct TlsCertificateReloader::Identity {
  TlsPem pem;  // the text it was parsed from: a reload that reads the same text changes nothing
  std::unique_ptr<X509, X509Free> leaf;
  std::unique_ptr<STACK_OF(X509), ChainFree> chain;  // intermediates, after the leaf
  std::unique_ptr<EVP_PKEY, KeyFree> key;
  std::unique_ptr<X509_STORE, StoreFree> client_ca;  // null without mTLS
};

absl::StatusOr<std::unique_ptr<TlsCertificateReloader>> TlsCertificateReloader::Create(
    const TlsOptions& options) {
  std::unique_ptr<TlsCertificateReloader> reloader(new TlsCertificateReloader(options));
  absl::StatusOr<bool> loaded = reloader->Reload();
  if (!loaded.ok()) return loaded.status();
  reloader->checker_ = std::thread([r = reloader.get()] { r->CheckPeriodically(); });
  return reloader;
}

TlsCertificateReloader::~TlsCertificateReloader() {
  {
    absl::MutexLock lock(&stop_mu_);
    stopping_ = true;
  }
  if (checker_.joinable()) checker_.join();
}

absl::StatusOr<bool> TlsCertificateReloader::Reload() {
  absl::StatusOr<TlsPem> pem = ReadTlsFiles(options_);
  if (!pem.ok()) return pem.status();
  if (std::shared_ptr<const Identity> current = Current();
      current != nullptr && current->pem.cert_chain == pem->cert_chain &&
      current->pem.private_key == pem->private_key && current->pem.client_ca == pem->client_ca) {
    return false;
  }
  auto next = std::make_shared<Identity>();
  absl::StatusOr<std::unique_ptr<STACK_OF(X509), ChainFree>> certs =
      ParseCertificates(pem->cert_chain, "--tls-cert", options_.cert_file);
  if (!certs.ok()) return certs.status();
  next->chain = *std::move(certs);
  next->leaf.reset(sk_X509_shift(next->chain.get()));
  std::unique_ptr<BIO, BioFree> key_bio(
      BIO_new_mem_buf(pem->private_key.data(), static_cast<int>(pem->private_key.size())));
  next->key.reset(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (next->key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-key ", options_.key_file, ": OpenSSL cannot parse the private key"));
  }
  if (X509_check_private_key(next->leaf.get(), next->key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-key ", options_.key_file,
                     ": not the key of the certificate in --tls-cert ", options_.cert_file));
  }
  if (!pem->client_ca.empty()) {
    absl::StatusOr<std::unique_ptr<STACK_OF(X509), ChainFree>> cas =
        ParseCertificates(pem->client_ca, "--tls-client-ca", options_.client_ca_file);
    if (!cas.ok()) return cas.status();
    next->client_ca.reset(X509_STORE_new());
    for (int i = 0; i < sk_X509_num(cas->get()); ++i) {
      if (X509_STORE_add_cert(next->client_ca.get(), sk_X509_value(cas->get(), i)) != 1) {
        ERR_clear_error();  // the same certificate twice in the bundle
      }
    }
  }
  next->pem = *std::move(pem);
  absl::MutexLock lock(&mu_);
  current_ = std::move(next);
  return true;
}

std::shared_ptr<const TlsCertificateReloader::Identity> TlsCertificateReloader::Current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

void TlsCertificateReloader::ConfigureServerContext(SSL_CTX* ctx) const {
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  // No certificate on the context itself: the callback sets one on every connection, before the
  // server picks a cipher suite for it.
  SSL_CTX_set_cert_cb(ctx, &TlsCertificateReloader::SelectCertificate,
                      const_cast<TlsCertificateReloader*>(this));
  if (!options_.client_ca_file.empty()) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    // With client verification on, OpenSSL refuses (fatally) to resume a session of a context
    // that has no session id context; clients that resume (curl, Go's Prometheus) would fail
    // their second connection.
    static constexpr unsigned char kSessionContext[] = "kvserve";
    SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof(kSessionContext) - 1);
  }
}

int TlsCertificateReloader::SelectCertificate(SSL* ssl, void* reloader) {
  const std::shared_ptr<const Identity> identity =
      static_cast<const TlsCertificateReloader*>(reloader)->Current();
  // Both calls take their own references: the connection keeps this pair even after a reload.
  if (SSL_use_cert_and_key(ssl, identity->leaf.get(), identity->key.get(), identity->chain.get(),
                           /*override=*/1) != 1) {
    return 0;  // fails the handshake
  }
  if (identity->client_ca != nullptr &&
      SSL_set1_verify_cert_store(ssl, identity->client_ca.get()) != 1) {
    return 0;
  }
  return 1;
}

void TlsCertificateReloader::CheckPeriodically() {
  const absl::Duration interval = absl::Seconds(options_.refresh_interval_seconds);
  for (;;) {
    {
      absl::MutexLock lock(&stop_mu_);
      if (stop_mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval)) return;
    }
    absl::StatusOr<bool> reloaded = Reload();
    if (!reloaded.ok()) {
      KV_LOG(WARNING) << "TLS certificate not reloaded, still serving the previous one: "
                      << reloaded.status().message();
    } else if (*reloaded) {
      KV_LOG(INFO) << "TLS certificate reloaded for the HTTP listeners from " << options_.cert_file;
    }
  }
}

}  // namespace kvserve::server
