#include "tools/bench/openai_client.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/status_macros.h"

namespace kvserve::bench {

namespace {

// Incremental decoder of a chunked body (RFC 9112 section 7.1); trailers are ignored.
class ChunkedDecoder {
 public:
  // Consumes what it can of `raw` (erasing it) into `out`; true once the last chunk was seen.
  bool Feed(std::string* raw, std::string* out) {
    for (;;) {
      if (remaining_ == 0) {
        if (need_crlf_) {
          if (raw->size() < 2) return false;
          raw->erase(0, 2);
          need_crlf_ = false;
        }
        const size_t eol = raw->find("\r\n");
        if (eol == std::string::npos) return false;
        const std::string size_text = raw->substr(0, raw->find_first_of(";\r"));
        size_t size = 0;
        if (!absl::SimpleHexAtoi(size_text, &size)) return done_ = true;  // malformed: stop
        raw->erase(0, eol + 2);
        if (size == 0) return done_ = true;
        remaining_ = size;
      }
      const size_t take = std::min(remaining_, raw->size());
      if (take == 0) return false;
      out->append(*raw, 0, take);
      raw->erase(0, take);
      remaining_ -= take;
      if (remaining_ == 0) need_crlf_ = true;
    }
  }
  bool done() const { return done_; }

 private:
  size_t remaining_ = 0;
  bool need_crlf_ = false;
  bool done_ = false;
};

struct Head {
  int status = 0;
  bool chunked = false;
  int64_t content_length = -1;
};

// Parses the status line and headers in `buffer` (erasing them); nullopt while incomplete.
std::optional<Head> ParseHead(std::string* buffer) {
  const size_t end = buffer->find("\r\n\r\n");
  if (end == std::string::npos) return std::nullopt;
  Head head;
  const std::string text = absl::AsciiStrToLower(buffer->substr(0, end));
  // A status line without a three-digit code leaves status 0: the caller reports a bad response.
  if (text.size() < 12 || !absl::SimpleAtoi(text.substr(9, 3), &head.status)) head.status = 0;
  head.chunked = absl::StrContains(text, "\r\ntransfer-encoding: chunked");
  if (const size_t cl = text.find("\r\ncontent-length:"); cl != std::string::npos) {
    const size_t value = cl + 17;
    int64_t n = 0;
    if (absl::SimpleAtoi(
            absl::StripAsciiWhitespace(text.substr(value, text.find("\r\n", value) - value)), &n)) {
      head.content_length = n;
    }
  }
  buffer->erase(0, end + 4);
  return head;
}

}  // namespace

int GrpcCodeForHttpStatus(int status) {
  switch (status) {
    case 200:
      return 0;
    case 400:
      return 3;  // INVALID_ARGUMENT
    case 404:
      return 5;  // NOT_FOUND
    case 429:
      return 8;  // RESOURCE_EXHAUSTED
    case 499:
      return 1;  // CANCELLED
    case 503:
      return 14;  // UNAVAILABLE
    case 504:
      return 4;  // DEADLINE_EXCEEDED
    default:
      return status >= 400 && status < 500 ? 9 /* FAILED_PRECONDITION */ : 13 /* INTERNAL */;
  }
}

OpenAiConnection::~OpenAiConnection() {
  stream_.reset();  // before its socket closes
  const int fd = fd_.exchange(-1);
  if (fd >= 0) close(fd);
}

absl::Status OpenAiConnection::Open(double timeout_s) {
  std::string host = host_port_, port = "80";
  if (const size_t colon = host_port_.rfind(':'); colon != std::string::npos) {
    host = host_port_.substr(0, colon);
    port = host_port_.substr(colon + 1);
  }
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]"))
    host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || found == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", host_port_));
  }
  // Every address in turn: "localhost" may resolve to ::1 first while the server listens on
  // 127.0.0.1 only.
  int fd = -1;
  int error = 0;
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      error = errno;
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot connect to ", host_port_, ": ", std::strerror(error)));
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (timeout_s > 0) {
    timeval tv{static_cast<time_t>(timeout_s),
               static_cast<suseconds_t>(std::fmod(timeout_s, 1.0) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  fd_.store(fd);
  if (cancelled_.load()) shutdown(fd, SHUT_RDWR);  // a Cancel that came first
  if (tls_ != nullptr) {
    absl::StatusOr<std::unique_ptr<tools::TlsStream>> stream = tls_->Handshake(fd, host);
    if (cancelled_.load()) return absl::CancelledError("cancelled by the client");
    if (!stream.ok()) return stream.status();
    stream_ = *std::move(stream);
  }
  return absl::OkStatus();
}

absl::Status OpenAiConnection::SendAll(absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = stream_ != nullptr ? stream_->Write(data)
                                         : send(fd_.load(), data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      if (cancelled_.load()) return absl::CancelledError("cancelled by the client");
      return absl::UnavailableError(absl::StrCat("send failed: ", std::strerror(errno)));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> OpenAiConnection::ReadSome(std::string* buffer) {
  char chunk[16384];
  const ssize_t n = stream_ != nullptr ? stream_->Read(chunk, sizeof(chunk))
                                       : recv(fd_.load(), chunk, sizeof(chunk), 0);
  if (cancelled_.load()) return absl::CancelledError("cancelled by the client");
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return absl::DeadlineExceededError("no reply within the timeout");
    }
    return absl::UnavailableError(absl::StrCat("recv failed: ", std::strerror(errno)));
  }
  buffer->append(chunk, static_cast<size_t>(n));
  return static_cast<size_t>(n);
}

void OpenAiConnection::Cancel() {
  cancelled_.store(true);
  const int fd = fd_.load();
  if (fd >= 0) shutdown(fd, SHUT_RDWR);
}

absl::StatusOr<HttpReply> OpenAiConnection::Exchange(absl::string_view path, absl::string_view body,
                                                     double timeout_s) {
  return Stream(path, body, timeout_s, nullptr);
}

absl::StatusOr<HttpReply> OpenAiConnection::Stream(
    absl::string_view path, absl::string_view body, double timeout_s,
    const std::function<void(absl::string_view data)>& on_event) {
  KV_RETURN_IF_ERROR(Open(timeout_s));
  const bool get = body.empty();
  std::string request = absl::StrCat(
      get ? "GET " : "POST ", path, " HTTP/1.1\r\nHost: ", host_port_, "\r\nConnection: close\r\n");
  if (!get) {
    absl::StrAppend(&request, "Content-Type: application/json\r\nContent-Length: ", body.size(),
                    "\r\n");
  }
  if (!api_key_.empty()) absl::StrAppend(&request, "Authorization: Bearer ", api_key_, "\r\n");
  absl::StrAppend(&request, "\r\n", body);
  KV_RETURN_IF_ERROR(SendAll(request));

  std::string raw;
  std::optional<Head> head;
  while (!head.has_value()) {
    KV_ASSIGN_OR_RETURN(size_t n, ReadSome(&raw));
    if (n == 0) return absl::UnavailableError("the server closed the connection without a reply");
    head = ParseHead(&raw);
  }
  HttpReply reply;
  reply.status = head->status;
  const bool events = on_event != nullptr && reply.status == 200;
  ChunkedDecoder chunks;
  size_t scanned = 0;  // body bytes already split into events
  for (;;) {
    bool complete;
    if (head->chunked) {
      complete = chunks.Feed(&raw, &reply.body);
    } else {
      reply.body += raw;
      raw.clear();
      complete = head->content_length >= 0 &&
                 static_cast<int64_t>(reply.body.size()) >= head->content_length;
    }
    if (events) {
      // Events are separated by a blank line; hand each complete one over.
      for (size_t end; (end = reply.body.find("\n\n", scanned)) != std::string::npos;
           scanned = end + 2) {
        absl::string_view event(reply.body.data() + scanned, end - scanned);
        if (!absl::ConsumePrefix(&event, "data: ")) continue;
        if (event == "[DONE]") return reply;
        on_event(event);
      }
    }
    if (complete) return reply;
    KV_ASSIGN_OR_RETURN(size_t n, ReadSome(&raw));
    if (n == 0) {
      if (head->content_length < 0 && !head->chunked) return reply;  // body ends at close
      return absl::UnavailableError("the server closed the connection mid-reply");
    }
  }
}

}  // namespace kvserve::bench
