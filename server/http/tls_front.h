// TlsFront: HTTPS for the scheduler's HTTP API.
//
// Debian 12's civetweb cannot serve TLS (it loads OpenSSL by 1.1 names that
// OpenSSL 3 no longer has; docs/openai-compat.md), so with TLS configured
// the HTTP API listens here instead: TlsFront accepts TCP connections on the
// public address, completes the TLS handshake with OpenSSL 3 (the
// scheduler's certificate chain and key, TLS 1.2 or newer; with a client CA,
// a client certificate signed by it is required, as for gRPC), then relays
// the decrypted bytes to the plaintext HTTP server on loopback and its
// answers back, until either side closes. Every HTTP rule stays in
// OpenAiHttpServer; this is transport only.
//
// One thread per connection, at most `max_connections` at once (a
// connection beyond that is closed at once); a handshake must finish within
// `handshake_timeout` and a connection idle in both directions for
// `idle_timeout` is closed.
//
// Thread-safety: Start/Stop from one thread; the rest is internal.
#ifndef FTUNE_SERVER_HTTP_TLS_FRONT_H_
#define FTUNE_SERVER_HTTP_TLS_FRONT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace ftune::server::http {

struct TlsFrontOptions {
  // "host:port" (IPv4; port 0 picks a free one, see port()).
  std::string listen_address;
  // The plaintext HTTP server, "127.0.0.1:port".
  std::string backend_address;
  // PEM: the certificate chain (leaf first) and its private key; with
  // client_ca_pem, clients must present a certificate signed by it.
  std::string cert_pem;
  std::string key_pem;
  std::string client_ca_pem;
  int max_connections = 64;
  absl::Duration handshake_timeout = absl::Seconds(10);
  absl::Duration idle_timeout = absl::Minutes(5);
};

class TlsFront {
 public:
  // INVALID_ARGUMENT for unusable PEM (saying which), UNAVAILABLE when the
  // address cannot be bound.
  static absl::StatusOr<std::unique_ptr<TlsFront>> Start(
      TlsFrontOptions options);
  ~TlsFront();  // Stop()s.
  TlsFront(const TlsFront&) = delete;
  TlsFront& operator=(const TlsFront&) = delete;

  int port() const;
  std::string address() const;  // "host:port" as bound.
  // Stops accepting, closes every connection and waits for their threads.
  void Stop();

 private:
  struct State;
  explicit TlsFront(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace ftune::server::http

#endif  // FTUNE_SERVER_HTTP_TLS_FRONT_H_
