// How kvserve's command-line clients (kvserve-cli, kvserve-bench) authenticate to a server: the
// API key sent as `authorization: Bearer <key>` on every call, and TLS with the CA that signed the
// server's certificate (plus a client certificate for servers run with --tls-client-ca).
//
//   --api-key KEY        or the environment variable KVSERVE_API_KEY (the flag wins; the
//                        variable keeps the key out of `ps` and shell history)
//   --tls-ca FILE        connect with TLS, trusting this PEM CA bundle
//   --tls-cert/--tls-key present this client certificate (mutual TLS)
//
// Thread-safety: ClientSecurity is a plain value; Authorize may run on any thread.
#ifndef KVSERVE_TOOLS_CLIENT_SECURITY_H_
#define KVSERVE_TOOLS_CLIENT_SECURITY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "base/flags.h"
#include "grpcpp/grpcpp.h"

namespace kvserve::tools {

struct ClientSecurity {
  std::string api_key;
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
};

// Adds --api-key, --tls-ca, --tls-cert and --tls-key.
void AddClientSecurityFlags(base::FlagSet& flags, ClientSecurity* security);

// The credentials to open channels with: plaintext without --tls-ca, else TLS trusting it.
// Fills an empty api_key from KVSERVE_API_KEY. Errors are INVALID_ARGUMENT naming the flag.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ResolveClientSecurity(
    ClientSecurity* security);

// Adds the authorization metadata to `context` (nothing without an API key).
void Authorize(const ClientSecurity& security, grpc::ClientContext* context);

}  // namespace kvserve::tools

#endif  // KVSERVE_TOOLS_CLIENT_SECURITY_H_
