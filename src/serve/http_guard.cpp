#include "serve/http_guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>

namespace samq::serve {

namespace {

using SteadyClock = std::chrono::steady_clock;

int ms_left(SteadyClock::time_point deadline) {
  // Rounded up, so a poll never wakes just before its deadline.
  auto d = std::chrono::ceil<std::chrono::milliseconds>(deadline - SteadyClock::now()).count();
  return int(std::clamp<int64_t>(d, 0, 1 << 30));
}

// Waits for `events` on sock until the deadline; false on timeout or error.
bool wait_fd(socket_t sock, short events, SteadyClock::time_point deadline) {
  for (;;) {
    pollfd p{sock, events, 0};
    const int r = ::poll(&p, 1, ms_left(deadline));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

// recv with a deadline: >0 bytes, 0 on EOF, -1 on error, kTimedOut when the deadline passed.
constexpr ssize_t kTimedOut = -2;
ssize_t recv_until(socket_t sock, char* buf, size_t n, int flags, SteadyClock::time_point deadline) {
  for (;;) {
    if (!wait_fd(sock, POLLIN, deadline)) return SteadyClock::now() >= deadline ? kTimedOut : -1;
    const ssize_t r = ::recv(sock, buf, n, flags);
    if (r >= 0) return r;
    if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) return -1;
  }
}

bool send_all(socket_t sock, const char* p, size_t n, SteadyClock::time_point deadline) {
  while (n > 0) {
    if (!wait_fd(sock, POLLOUT, deadline)) return false;
    const ssize_t r = ::send(sock, p, n, MSG_NOSIGNAL);
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return false;
    }
    p += r;
    n -= size_t(r);
  }
  return true;
}

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

struct Reject {
  int status;
  std::string code, message;
};

const char* reason_phrase(int st) {
  switch (st) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

void send_reject(socket_t sock, const Reject& r, int write_timeout_ms) {
  nlohmann::json e = {{"error",
                       {{"message", r.message},
                        {"type", r.status == 503 ? "server_error" : "invalid_request_error"},
                        {"param", nullptr},
                        {"code", r.code}}}};
  const std::string body = e.dump();
  std::string msg = "HTTP/1.1 " + std::to_string(r.status) + " " + reason_phrase(r.status) +
                    "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\n";
  if (r.status == 503) msg += "Retry-After: 1\r\n";
  msg += "\r\n" + body;
  send_all(sock, msg.data(), msg.size(), SteadyClock::now() + std::chrono::milliseconds(write_timeout_ms));
  // Lingering close: closing with unread input makes the kernel send a reset, which can destroy
  // the answer before the client reads it. Half-close, then discard what still comes for a
  // bounded time (1 s), as Apache and nginx do.
  ::shutdown(sock, SHUT_WR);
  const auto until = SteadyClock::now() + std::chrono::milliseconds(1000);
  char buf[16384];
  while (recv_until(sock, buf, sizeof buf, 0, until) > 0) {
  }
}

// Reads one request head (through the blank line) without reading past it: bytes are peeked,
// and only the head's own bytes consumed. nullopt + empty reject: the peer closed before a byte.
std::optional<Reject> read_head(socket_t sock, const HttpLimits& lim, std::string& head, bool& eof,
                                SteadyClock::time_point deadline) {
  eof = false;
  head.clear();
  char buf[4096];
  for (;;) {
    const size_t room = lim.max_header_bytes + 4 - head.size();  // +4: the final CRLFCRLF
    const ssize_t n = recv_until(sock, buf, std::min(sizeof buf, room), MSG_PEEK, deadline);
    if (n <= 0) {
      if (n == 0 && head.empty()) { eof = true; return std::nullopt; }
      if (n == kTimedOut)
        return Reject{408, "request_timeout",
                      "The request head did not arrive in time (--read-timeout-s covers the whole request)."};
      eof = true;  // closed mid-head, or a socket error: nothing to answer
      return std::nullopt;
    }
    // Where does the head end, counting the last 3 bytes already consumed?
    const size_t keep = std::min<size_t>(3, head.size());
    std::string probe = head.substr(head.size() - keep) + std::string(buf, size_t(n));
    const size_t end = probe.find("\r\n\r\n");
    const size_t take = end == std::string::npos ? size_t(n) : end + 4 - keep;
    const ssize_t got = ::recv(sock, buf, take, 0);
    if (got <= 0) { eof = true; return std::nullopt; }
    head.append(buf, size_t(got));
    const size_t eol = head.find("\r\n");
    if ((eol == std::string::npos ? head.size() : eol) > lim.max_request_line)
      return Reject{414, "uri_too_long",
                    "The request line is longer than " + std::to_string(lim.max_request_line) + " bytes."};
    if (end != std::string::npos && size_t(got) == take) return std::nullopt;
    if (head.size() > lim.max_header_bytes)
      return Reject{431, "headers_too_large",
                    "The request headers are larger than " + std::to_string(lim.max_header_bytes) + " bytes."};
  }
}

// Reads a line ending in CRLF (chunk size, trailer), byte by byte so nothing after it is consumed.
bool read_line(socket_t sock, std::string& line, size_t max, SteadyClock::time_point deadline) {
  line.clear();
  char c;
  while (line.size() < max + 2) {
    if (recv_until(sock, &c, 1, 0, deadline) != 1) return false;
    line.push_back(c);
    if (line.size() >= 2 && line[line.size() - 2] == '\r' && c == '\n') {
      line.resize(line.size() - 2);
      return true;
    }
  }
  return false;
}

bool read_exact(socket_t sock, std::string& out, size_t n, SteadyClock::time_point deadline) {
  char buf[16384];
  while (n > 0) {
    const ssize_t r = recv_until(sock, buf, std::min(n, sizeof buf), 0, deadline);
    if (r <= 0) return false;
    out.append(buf, size_t(r));
    n -= size_t(r);
  }
  return true;
}

// Decodes a chunked body into `body`, counting its data against the cap.
std::optional<Reject> read_chunked(socket_t sock, const HttpLimits& lim, std::string& body,
                                   SteadyClock::time_point deadline) {
  const Reject bad{400, "bad_request", "Malformed or incomplete chunked request body."};
  std::string line;
  for (;;) {
    if (!read_line(sock, line, 64, deadline)) return SteadyClock::now() + std::chrono::milliseconds(1) >= deadline
        ? Reject{408, "request_timeout", "The request body did not arrive in time."} : bad;
    const std::string hex = trim(line.substr(0, line.find(';')));
    if (hex.empty() || hex.size() > 15 || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) return bad;
    const size_t n = std::stoull(hex, nullptr, 16);
    if (n == 0) break;
    if (body.size() + n > lim.max_body_bytes)
      return Reject{413, "request_too_large",
                    "Request body too large: the limit is " + std::to_string(lim.max_body_bytes) +
                        " bytes (--max-body-bytes)."};
    if (!read_exact(sock, body, n, deadline) || !read_line(sock, line, 0, deadline)) return bad;
  }
  // Trailers, up to the blank line; bounded like headers.
  size_t trailer_bytes = 0;
  for (;;) {
    if (!read_line(sock, line, lim.max_request_line, deadline)) return bad;
    if (line.empty()) return std::nullopt;
    if ((trailer_bytes += line.size()) > lim.max_header_bytes) return bad;
  }
}

// Checks a head; may rewrite it (chunked → Content-Length) and fill `body` (chunked only).
std::optional<Reject> check_head(socket_t sock, const HttpLimits& lim, std::string& head, std::string& body,
                                 SteadyClock::time_point deadline) {
  std::vector<std::string> lines;
  for (size_t pos = 0;;) {
    const size_t e = head.find("\r\n", pos);
    if (e == std::string::npos || e == pos) break;
    lines.push_back(head.substr(pos, e - pos));
    pos = e + 2;
  }
  if (lines.empty()) return Reject{400, "bad_request", "Empty request line."};
  if (lines.size() - 1 > lim.max_headers)
    return Reject{431, "headers_too_large", "More than " + std::to_string(lim.max_headers) + " request headers."};
  const std::string& rl = lines[0];
  const std::string method = rl.substr(0, rl.find(' '));
  std::optional<std::string> content_length, transfer_encoding;
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == std::string::npos || colon == 0) return Reject{400, "bad_request", "Malformed request header."};
    const std::string name = lower(lines[i].substr(0, colon)), value = trim(lines[i].substr(colon + 1));
    if (name.find_first_of(" \t") != std::string::npos) return Reject{400, "bad_request", "Malformed request header."};
    if (name == "content-length") {
      if (content_length && *content_length != value)
        return Reject{400, "bad_request", "Conflicting Content-Length headers."};
      content_length = value;
    } else if (name == "transfer-encoding") {
      if (transfer_encoding) return Reject{400, "bad_request", "Repeated Transfer-Encoding header."};
      transfer_encoding = lower(value);
    } else if (name == "content-encoding") {
      const std::string v = lower(value);
      if (!v.empty() && v != "identity")
        return Reject{415, "unsupported_media_type",
                      "Content-Encoding '" + value.substr(0, 32) + "' is not accepted: send the body uncompressed."};
    }
  }
  const bool has_body_method = method == "POST" || method == "PUT" || method == "PATCH";
  if (transfer_encoding) {
    if (*transfer_encoding != "chunked")
      return Reject{400, "bad_request", "Only 'Transfer-Encoding: chunked' is accepted."};
    if (content_length) return Reject{400, "bad_request", "Both Content-Length and Transfer-Encoding were sent."};
    if (auto r = read_chunked(sock, lim, body, deadline)) return r;
    // Replay as a plain Content-Length request.
    std::string out = lines[0] + "\r\n";
    for (size_t i = 1; i < lines.size(); ++i) {
      const std::string name = lower(lines[i].substr(0, lines[i].find(':')));
      if (name != "transfer-encoding" && name != "trailer") out += lines[i] + "\r\n";
    }
    out += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    head = std::move(out);
    return std::nullopt;
  }
  if (content_length) {
    const std::string& v = *content_length;
    if (v.empty() || v.size() > 18 || v.find_first_not_of("0123456789") != std::string::npos)
      return Reject{400, "bad_request", "Invalid Content-Length."};
    if (std::stoull(v) > lim.max_body_bytes)
      return Reject{413, "request_too_large",
                    "Request body too large: the limit is " + std::to_string(lim.max_body_bytes) +
                        " bytes (--max-body-bytes)."};
    return std::nullopt;
  }
  if (has_body_method) return Reject{411, "length_required", "A " + method + " request needs a Content-Length header."};
  return std::nullopt;
}

// The stream httplib parses: first the checked head (and a de-chunked body), then the socket,
// with one deadline for the whole request (head and body) and one write budget for the whole
// response: the time spent waiting for the client to take bytes (a full socket buffer) adds up
// over all writes, so a reader that takes a few bytes now and then is dropped as surely as one
// that takes none.
class GuardedStream : public httplib::Stream {
 public:
  GuardedStream(socket_t sock, std::string replay, SteadyClock::time_point body_deadline, int write_budget_ms)
      : sock_(sock), replay_(std::move(replay)), body_deadline_(body_deadline),
        write_budget_(std::chrono::milliseconds(write_budget_ms)) {}

  bool is_readable() const override { return pos_ < replay_.size() || wait_fd(sock_, POLLIN, body_deadline_); }
  bool is_writable() const override {
    if (!wait_writable()) return false;
    // The peer closed its side: a vanished client shows before the next write fails.
    char c;
    const ssize_t r = ::recv(sock_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return !(r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR));
  }
  ssize_t read(char* ptr, size_t size) override {
    if (pos_ < replay_.size()) {
      const size_t n = std::min(size, replay_.size() - pos_);
      std::copy_n(replay_.data() + pos_, n, ptr);
      pos_ += n;
      return ssize_t(n);
    }
    return recv_until(sock_, ptr, size, 0, body_deadline_);
  }
  ssize_t write(const char* ptr, size_t size) override {
    const size_t total = size;
    while (size > 0) {
      if (!wait_writable()) return -1;
      const ssize_t n = ::send(sock_, ptr, size, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
        return -1;
      }
      ptr += n;
      size -= size_t(n);
    }
    return ssize_t(total);
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override { addr(false, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { addr(true, ip, port); }
  socket_t socket() const override { return sock_; }

 private:
  void addr(bool local, std::string& ip, int& port) const {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    const int r = local ? ::getsockname(sock_, reinterpret_cast<sockaddr*>(&ss), &len)
                        : ::getpeername(sock_, reinterpret_cast<sockaddr*>(&ss), &len);
    if (r != 0) return;
    char buf[INET6_ADDRSTRLEN] = {};
    if (ss.ss_family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      ::inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
      port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      ::inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
      port = ntohs(a->sin6_port);
    }
    ip = buf;
  }
  // Waits until the socket takes bytes, charging the wait to the response's write budget.
  bool wait_writable() const {
    pollfd p{sock_, POLLOUT, 0};
    if (::poll(&p, 1, 0) == 1 && (p.revents & POLLOUT)) return true;
    if (write_budget_.count() <= 0) return false;
    const auto t0 = SteadyClock::now();
    const bool ok = wait_fd(sock_, POLLOUT, t0 + write_budget_);
    write_budget_ -= std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - t0) +
                     std::chrono::milliseconds(1);
    return ok;
  }
  socket_t sock_;
  std::string replay_;
  size_t pos_ = 0;
  SteadyClock::time_point body_deadline_;
  mutable std::chrono::milliseconds write_budget_;
};

thread_local socket_t t_current_sock = INVALID_SOCKET;

}  // namespace

bool current_client_gone() {
  if (t_current_sock == INVALID_SOCKET) return false;
  char c;
  const ssize_t r = ::recv(t_current_sock, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

bool GuardedHttpServer::process_and_close_socket(socket_t sock) {
  struct Current {
    explicit Current(socket_t s) { t_current_sock = s; }
    ~Current() { t_current_sock = INVALID_SOCKET; }
  } current(sock);
  struct Count {
    std::atomic<int>& n;
    int now;
    explicit Count(std::atomic<int>& c) : n(c), now(++c) {}
    ~Count() { --n; }
  } count(conns_);
  if (lim_.send_buffer_bytes > 0)
    ::setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &lim_.send_buffer_bytes, sizeof lim_.send_buffer_bytes);
  auto reject = [&](const Reject& r) {
    send_reject(sock, r, lim_.write_timeout_ms);
    if (on_reject_) on_reject_(r.status, r.code);
  };
  bool ok = true;
  if (count.now > lim_.max_connections) {
    reject({503, "too_many_connections",
            "The server has " + std::to_string(lim_.max_connections) + " connections open; retry shortly."});
  } else {
    try {
      for (size_t served = 0; served < lim_.keep_alive_max && svr_sock_ != INVALID_SOCKET; ++served) {
        // The first request may take the request timeout to start; later ones the idle timeout.
        const int wait_ms = served == 0 ? lim_.request_timeout_ms : lim_.idle_timeout_ms;
        const auto idle_end = SteadyClock::now() + std::chrono::milliseconds(wait_ms);
        bool readable = false;
        while (!readable && svr_sock_ != INVALID_SOCKET && SteadyClock::now() < idle_end)
          readable = wait_fd(sock, POLLIN, std::min(idle_end, SteadyClock::now() + std::chrono::milliseconds(50)));
        if (!readable) break;
        std::string head, body;
        bool eof = false;
        // One deadline for the whole request, head and body, from its first byte.
        const auto request_deadline = SteadyClock::now() + std::chrono::milliseconds(lim_.request_timeout_ms);
        if (auto r = read_head(sock, lim_, head, eof, request_deadline)) {
          reject(*r);
          break;
        }
        if (eof) break;
        if (auto r = check_head(sock, lim_, head, body, request_deadline)) {
          reject(*r);
          break;
        }
        GuardedStream strm(sock, head + body, request_deadline, lim_.write_timeout_ms);
        bool closed = false;
        const bool last = served + 1 >= lim_.keep_alive_max || svr_sock_ == INVALID_SOCKET;
        ok = process_request(strm, last, closed, nullptr);
        if (!ok || closed) break;
      }
    } catch (...) {
      // A handler or content provider that escaped every other net: drop this connection, never
      // the process.
      ok = false;
      if (on_reject_) on_reject_(500, "uncaught_exception");
    }
  }
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ok;
}

}  // namespace samq::serve
