// A one-request HTTPS client for tests, on OpenSSL directly: GET a path from 127.0.0.1:port,
// verifying the server's certificate against a CA file (and its name, 127.0.0.1), optionally
// presenting a client certificate. It reports what a test asserts on: whether the exchange got an
// HTTP answer, its status and body, and the certificate the server presented.
//
// Every connection is new and makes a full handshake, as a client arriving after a rotation would,
// unless the caller hands it an earlier session to resume.
//
// Thread-safety: plain functions; safe from any thread.
#ifndef KVSERVE_TESTS_TESTING_HTTPS_CLIENT_H_
#define KVSERVE_TESTS_TESTING_HTTPS_CLIENT_H_

#include <memory>
#include <string>

// <openssl/ssl.h>
typedef struct ssl_session_st SSL_SESSION;

namespace kvserve::testing {

struct HttpsClientOptions {
  std::string ca_file;    // PEM bundle the server's certificate must chain to
  std::string cert_file;  // with key_file: the client certificate (mutual TLS); empty: none
  std::string key_file;
  // Resume this session (from an earlier HttpsReply) instead of a full handshake.
  std::shared_ptr<SSL_SESSION> session;
};

struct HttpsReply {
  int status = 0;  // 0: no HTTP answer (refused handshake, connection closed, timeout)
  std::string body;
  std::string server_common_name;        // CN of the certificate the server presented; "" if none
  std::string error;                     // why status is 0
  std::shared_ptr<SSL_SESSION> session;  // to resume on a later connection; null if none
  bool resumed = false;                  // the handshake resumed options.session
};

// GET `path` with Connection: close; waits at most 30 s for each read.
HttpsReply HttpsGet(int port, const std::string& path, const HttpsClientOptions& options);

// The same request in plain HTTP to a port; its raw answer ("" when the server closed without
// one), for checking that an HTTPS port does not serve plaintext.
std::string PlainHttpGet(int port, const std::string& path);

}  // namespace kvserve::testing

#endif  // KVSERVE_TESTS_TESTING_HTTPS_CLIENT_H_
