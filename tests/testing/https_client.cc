#include "tests/testing/https_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <memory>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace kvserve::testing {

namespace {

constexpr int kReadTimeoutSeconds = 30;

std::string OpenSslError(const char* what) {
  std::string text = what;
  while (unsigned long e = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(e, buffer, sizeof(buffer));
    absl::StrAppend(&text, ": ", buffer);
  }
  return text;
}

// A TCP connection to 127.0.0.1:port with a receive timeout; -1 on failure.
int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval tv{kReadTimeoutSeconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

std::string Request(const std::string& path) {
  return absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
}

// Splits a raw HTTP/1.1 answer (not chunked) into `reply`.
void ParseAnswer(const std::string& raw, HttpsReply* reply) {
  const size_t header_end = raw.find("\r\n\r\n");
  int status = 0;
  if (!raw.starts_with("HTTP/1.1 ") || raw.size() < 12 ||
      !absl::SimpleAtoi(raw.substr(9, 3), &status) || header_end == std::string::npos) {
    reply->error = absl::StrCat("no HTTP answer (", raw.size(), " bytes)");
    return;
  }
  reply->status = status;
  reply->body = raw.substr(header_end + 4);
}

}  // namespace

HttpsReply HttpsGet(int port, const std::string& path, const HttpsClientOptions& options) {
  HttpsReply reply;
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        &SSL_CTX_free);
  if (ctx == nullptr ||
      SSL_CTX_load_verify_locations(ctx.get(), options.ca_file.c_str(), nullptr) != 1) {
    reply.error = OpenSslError("loading the CA file");
    return reply;
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (!options.cert_file.empty() &&
      (SSL_CTX_use_certificate_chain_file(ctx.get(), options.cert_file.c_str()) != 1 ||
       SSL_CTX_use_PrivateKey_file(ctx.get(), options.key_file.c_str(), SSL_FILETYPE_PEM) != 1)) {
    reply.error = OpenSslError("loading the client certificate");
    return reply;
  }
  const int fd = Connect(port);
  if (fd < 0) {
    reply.error = "cannot connect";
    return reply;
  }
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), &SSL_free);
  SSL_set_fd(ssl.get(), fd);
  X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), "127.0.0.1");
  if (options.session != nullptr) SSL_set_session(ssl.get(), options.session.get());
  if (SSL_connect(ssl.get()) != 1) {
    reply.error = OpenSslError("handshake");
    close(fd);
    return reply;
  }
  if (X509* cert = SSL_get1_peer_certificate(ssl.get())) {
    char cn[256] = {0};
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn)) >
        0) {
      reply.server_common_name = cn;
    }
    X509_free(cert);
  }
  const std::string request = Request(path);
  std::string raw;
  std::string failure;
  // With TLS 1.3 a server that refuses the client's certificate says so after the client's
  // handshake has completed: the refusal arrives here, as a failed write or read.
  if (const int n = SSL_write(ssl.get(), request.data(), static_cast<int>(request.size()));
      n <= 0) {
    failure =
        OpenSslError(absl::StrCat("write (SSL error ", SSL_get_error(ssl.get(), n), ")").c_str());
  } else {
    char buffer[16384];
    for (;;) {
      const int n = SSL_read(ssl.get(), buffer, sizeof(buffer));
      if (n <= 0) {
        failure = OpenSslError(
            absl::StrCat("read (SSL error ", SSL_get_error(ssl.get(), n), ")").c_str());
        break;
      }
      raw.append(buffer, static_cast<size_t>(n));
    }
  }
  ParseAnswer(raw, &reply);
  if (reply.status == 0) absl::StrAppend(&reply.error, ", ", failure);
  // After the whole answer: TLS 1.3 sends its session tickets after the handshake.
  reply.resumed = SSL_session_reused(ssl.get()) == 1;
  if (SSL_SESSION* session = SSL_get1_session(ssl.get()); session != nullptr) {
    reply.session.reset(session, &SSL_SESSION_free);
  }
  SSL_shutdown(ssl.get());
  close(fd);
  return reply;
}

std::string PlainHttpGet(int port, const std::string& path) {
  const int fd = Connect(port);
  if (fd < 0) return "";
  const std::string request = Request(path);
  std::string raw;
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
      static_cast<ssize_t>(request.size())) {
    char buffer[4096];
    ssize_t n;
    while ((n = recv(fd, buffer, sizeof(buffer), 0)) > 0) raw.append(buffer, n);
  }
  close(fd);
  return raw;
}

}  // namespace kvserve::testing
