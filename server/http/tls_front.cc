#include "server/http/tls_front.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <set>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"

namespace ftune::server::http {
namespace {

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

absl::StatusOr<sockaddr_in> ParseIpv4(const std::string& address,
                                      absl::string_view what) {
  const size_t colon = address.rfind(':');
  int port = -1;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 ||
      port > 65535 ||
      inet_pton(AF_INET, address.substr(0, colon).c_str(), &sa.sin_addr) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " \"", address, "\": not an IPv4 host:port"));
  }
  sa.sin_port = htons(static_cast<uint16_t>(port));
  return sa;
}

void SetTimeout(int fd, absl::Duration d) {
  timeval tv = absl::ToTimeval(d);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

void NoDelay(int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

bool SendAll(int fd, const char* data, size_t n) {
  while (n > 0) {
    const ssize_t w = send(fd, data, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool SslWriteAll(SSL* ssl, const char* data, size_t n) {
  while (n > 0) {
    const int w = SSL_write(ssl, data, static_cast<int>(n));
    if (w <= 0) {
      const int e = SSL_get_error(ssl, w);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) continue;
      return false;
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Reads every PEM certificate in `pem`.
std::vector<X509*> ReadCertificates(const std::string& pem) {
  std::vector<X509*> out;
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return out;
  while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
    out.push_back(cert);
  }
  ERR_clear_error();  // The end of the data reads as an error.
  BIO_free(bio);
  return out;
}

absl::StatusOr<SSL_CTX*> MakeContext(const TlsFrontOptions& o) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return absl::InternalError(OpenSslError());
  auto fail = [ctx](std::string why) {
    SSL_CTX_free(ctx);
    return absl::InvalidArgumentError(std::move(why));
  };
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // After a record that carries no application data, SSL_read returns
  // WANT_READ instead of blocking for more: the relay goes back to poll.
  SSL_CTX_clear_mode(ctx, SSL_MODE_AUTO_RETRY);
  std::vector<X509*> chain = ReadCertificates(o.cert_pem);
  if (chain.empty()) return fail("TLS certificate: no PEM certificate in it");
  const bool leaf_ok = SSL_CTX_use_certificate(ctx, chain[0]) == 1;
  X509_free(chain[0]);
  bool chain_ok = leaf_ok;
  for (size_t i = 1; i < chain.size(); ++i) {
    // add0 takes ownership.
    if (!chain_ok || SSL_CTX_add0_chain_cert(ctx, chain[i]) != 1) {
      X509_free(chain[i]);
      chain_ok = false;
    }
  }
  if (!chain_ok) return fail("TLS certificate: " + OpenSslError());
  BIO* bio =
      BIO_new_mem_buf(o.key_pem.data(), static_cast<int>(o.key_pem.size()));
  EVP_PKEY* key = bio == nullptr
                      ? nullptr
                      : PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (key == nullptr) return fail("TLS key: no PEM private key in it");
  const bool key_ok = SSL_CTX_use_PrivateKey(ctx, key) == 1;
  EVP_PKEY_free(key);
  if (!key_ok || SSL_CTX_check_private_key(ctx) != 1) {
    return fail("TLS key: does not match the certificate (" + OpenSslError() +
                ")");
  }
  if (!o.client_ca_pem.empty()) {
    std::vector<X509*> cas = ReadCertificates(o.client_ca_pem);
    if (cas.empty()) return fail("TLS client CA: no PEM certificate in it");
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    bool ok = true;
    for (X509* ca : cas) {
      ok = ok && X509_STORE_add_cert(store, ca) == 1;
      X509_free(ca);  // The store keeps its own reference.
    }
    if (!ok) return fail("TLS client CA: " + OpenSslError());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       nullptr);
  }
  return ctx;
}

}  // namespace

struct TlsFront::State {
  TlsFrontOptions options;
  SSL_CTX* ctx = nullptr;
  sockaddr_in backend{};
  int listen_fd = -1;
  int wake[2] = {-1, -1};
  int port = 0;
  std::string host;
  std::thread acceptor;
  std::atomic<int64_t> handshake_failures{0};

  absl::Mutex mu;
  std::set<int> open_fds ABSL_GUARDED_BY(mu);
  int active ABSL_GUARDED_BY(mu) = 0;
  bool stopping ABSL_GUARDED_BY(mu) = false;

  void AcceptLoop();
  void Serve(int fd);
  // Remembers `fd` so Stop() can shut it down; false once stopping.
  bool Track(int fd) {
    absl::MutexLock lock(&mu);
    if (stopping) return false;
    open_fds.insert(fd);
    return true;
  }
  void Untrack(int fd) {
    absl::MutexLock lock(&mu);
    open_fds.erase(fd);
  }
  void Relay(SSL* ssl, int client, int backend_fd);
};

void TlsFront::State::AcceptLoop() {
  for (;;) {
    pollfd p[2] = {{listen_fd, POLLIN, 0}, {wake[0], POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      FTUNE_LOG(ERROR) << "HTTPS listener: poll: " << std::strerror(errno);
      return;
    }
    if (p[1].revents != 0) return;  // Stop().
    if ((p[0].revents & POLLIN) == 0) continue;
    const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;  // The peer left already, or out of descriptors.
    {
      absl::MutexLock lock(&mu);
      if (stopping || active >= options.max_connections) {
        close(fd);
        continue;
      }
      ++active;
      open_fds.insert(fd);
    }
    std::thread([this, fd] { Serve(fd); }).detach();
  }
}

void TlsFront::State::Serve(int fd) {
  NoDelay(fd);
  SetTimeout(fd, options.handshake_timeout);
  SSL* ssl = SSL_new(ctx);
  int backend_fd = -1;
  if (ssl != nullptr && SSL_set_fd(ssl, fd) == 1 && SSL_accept(ssl) == 1) {
    backend_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (backend_fd >= 0 && Track(backend_fd)) {
      if (connect(backend_fd, reinterpret_cast<const sockaddr*>(&backend),
                  sizeof(backend)) == 0) {
        NoDelay(backend_fd);
        SetTimeout(fd, options.idle_timeout);
        SetTimeout(backend_fd, options.idle_timeout);
        Relay(ssl, fd, backend_fd);
        SSL_shutdown(ssl);  // close_notify, best effort.
      } else {
        FTUNE_LOG(WARNING) << "HTTPS: cannot reach the HTTP API on loopback: "
                           << std::strerror(errno);
      }
    }
  } else {
    // Scanners, plaintext clients and wrong certificates end here: the
    // first and then every 100th is logged.
    const int64_t n = handshake_failures.fetch_add(1) + 1;
    if (n == 1 || n % 100 == 0) {
      FTUNE_LOG(WARNING) << "HTTPS handshake failed (" << n
                         << " so far): " << OpenSslError();
    }
  }
  ERR_clear_error();
  if (ssl != nullptr) SSL_free(ssl);
  if (backend_fd >= 0) {
    Untrack(backend_fd);
    close(backend_fd);
  }
  Untrack(fd);
  close(fd);
  absl::MutexLock lock(&mu);
  --active;
}

void TlsFront::State::Relay(SSL* ssl, int client, int backend_fd) {
  char buf[16 << 10];
  const int idle_ms =
      static_cast<int>(absl::ToInt64Milliseconds(options.idle_timeout));
  for (;;) {
    bool from_client = SSL_pending(ssl) > 0;
    bool from_backend = false;
    if (!from_client) {
      pollfd p[2] = {{client, POLLIN, 0}, {backend_fd, POLLIN, 0}};
      const int n = poll(p, 2, idle_ms);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // Idle for too long, or an error.
      from_client = p[0].revents != 0;
      from_backend = p[1].revents != 0;
    }
    if (from_client) {
      const int r = SSL_read(ssl, buf, sizeof(buf));
      if (r > 0) {
        if (!SendAll(backend_fd, buf, static_cast<size_t>(r))) return;
      } else {
        const int e = SSL_get_error(ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) return;
      }
    }
    if (from_backend) {
      const ssize_t r = read(backend_fd, buf, sizeof(buf));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return;  // The HTTP server closed the connection.
      if (!SslWriteAll(ssl, buf, static_cast<size_t>(r))) return;
    }
  }
}

absl::StatusOr<std::unique_ptr<TlsFront>> TlsFront::Start(
    TlsFrontOptions options) {
  if (options.max_connections < 1) {
    return absl::InvalidArgumentError("max_connections must be >= 1");
  }
  // A client that vanishes mid-write must not kill the process: SSL_write
  // writes to the socket with write(2).
  signal(SIGPIPE, SIG_IGN);
  auto state = std::make_unique<State>();
  state->options = std::move(options);
  const TlsFrontOptions& o = state->options;
  absl::StatusOr<sockaddr_in> bind_to = ParseIpv4(o.listen_address, "address");
  if (!bind_to.ok()) return bind_to.status();
  absl::StatusOr<sockaddr_in> backend =
      ParseIpv4(o.backend_address, "backend address");
  if (!backend.ok()) return backend.status();
  state->backend = *backend;
  absl::StatusOr<SSL_CTX*> ctx = MakeContext(o);
  if (!ctx.ok()) return ctx.status();
  state->ctx = *ctx;
  std::unique_ptr<TlsFront> front(new TlsFront(std::move(state)));
  State& s = *front->state_;
  s.listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(s.listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (s.listen_fd < 0 ||
      bind(s.listen_fd, reinterpret_cast<const sockaddr*>(&*bind_to),
           sizeof(*bind_to)) != 0 ||
      ::listen(s.listen_fd, 128) != 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", o.listen_address, ": ", std::strerror(errno)));
  }
  sockaddr_in bound{};
  socklen_t len = sizeof(bound);
  getsockname(s.listen_fd, reinterpret_cast<sockaddr*>(&bound), &len);
  s.port = ntohs(bound.sin_port);
  s.host = o.listen_address.substr(0, o.listen_address.rfind(':'));
  if (pipe2(s.wake, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  s.acceptor = std::thread([&s] { s.AcceptLoop(); });
  return front;
}

TlsFront::TlsFront(std::unique_ptr<State> state) : state_(std::move(state)) {}

TlsFront::~TlsFront() {
  Stop();
  if (state_->listen_fd >= 0) close(state_->listen_fd);
  for (int fd : state_->wake) {
    if (fd >= 0) close(fd);
  }
  if (state_->ctx != nullptr) SSL_CTX_free(state_->ctx);
}

int TlsFront::port() const { return state_->port; }

std::string TlsFront::address() const {
  return absl::StrCat(state_->host, ":", state_->port);
}

void TlsFront::Stop() {
  State& s = *state_;
  {
    absl::MutexLock lock(&s.mu);
    if (s.stopping) return;
    s.stopping = true;
    // Unblocks every connection thread's poll, read and write.
    for (int fd : s.open_fds) shutdown(fd, SHUT_RDWR);
  }
  if (s.acceptor.joinable()) {
    const char byte = 0;
    (void)!write(s.wake[1], &byte, 1);
    s.acceptor.join();
  }
  absl::MutexLock lock(&s.mu);
  s.mu.Await(absl::Condition(
      +[](State* st)
           ABSL_EXCLUSIVE_LOCKS_REQUIRED(st->mu) { return st->active == 0; },
      &s));
}

}  // namespace ftune::server::http
