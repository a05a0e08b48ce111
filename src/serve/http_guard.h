// serve/http_guard.h — a front check in front of cpp-httplib's request parser.
//
// Debian's cpp-httplib 0.11.4 reads request lines and header lines of any length and any number
// of headers, ignores the payload cap for chunked bodies (CVE-2025-46728), inflates gzip/br
// bodies without limit, and times out per read() rather than per request. GuardedHttpServer
// overrides the per-connection entry point (process_and_close_socket) and reads each request
// head itself, bounded in bytes and in time, before httplib sees it:
//   - request line > max_request_line → 414; head > max_header_bytes or > max_headers → 431;
//   - Content-Encoding other than identity → 415; Transfer-Encoding other than chunked, or
//     chunked together with Content-Length → 400; POST/PUT/PATCH without either → 411;
//     Content-Length (or a chunked body, decoded here and counted) above max_body_bytes → 413;
//   - the whole request, head and body, must arrive within request_timeout_ms of its first byte
//     (one deadline, not per read): a trickling client is cut off;
//   - a response may wait at most write_timeout_ms in all for the client to read (summed over
//     writes): a slow reader is dropped, and its request cancelled;
//   - at most max_connections connections are served at once; beyond, 503 and close.
// A request that passes is replayed to httplib's parser (chunked bodies de-chunked, with a
// Content-Length), which then reads no more than the declared body from the socket.
// Rejections are OpenAI error objects with `Connection: close`.
#pragma once
#include <httplib.h>

#include <atomic>
#include <functional>
#include <string>

namespace samq::serve {

struct HttpLimits {
  size_t max_request_line = 8192;
  size_t max_header_bytes = 16384;  // the whole head: request line + headers
  size_t max_headers = 64;
  size_t max_body_bytes = 1 << 20;
  int request_timeout_ms = 10000;   // whole head and body together, from the first byte
  int idle_timeout_ms = 5000;       // between requests of a keep-alive connection
  // A response may wait this long in all for the client to take its bytes, summed over all
  // writes (a slow SSE reader is dropped once it is spent; a reader that keeps up never waits).
  int write_timeout_ms = 30000;
  // Kernel send buffer per connection (SO_SNDBUF; 0: the kernel's autotuning, which grows to
  // megabytes): bounds the memory a client that does not read can pin, and lets the write budget
  // notice it within a few seconds.
  int send_buffer_bytes = 64 * 1024;
  int max_connections = 256;
  size_t keep_alive_max = 1000;
};

// What the front decided about one request (for metrics); status 0: passed to httplib.
using HttpRejectHook = std::function<void(int status, const std::string& reason)>;

// From a handler: whether the client of the request this thread is serving has closed its side
// (false outside a GuardedHttpServer handler). Lets a handler that waits before sending anything
// (queued, in prefill) notice a client that left.
bool current_client_gone();

class GuardedHttpServer : public httplib::Server {
 public:
  explicit GuardedHttpServer(HttpLimits lim = {}) : lim_(lim) {}
  HttpLimits& limits() { return lim_; }
  void set_reject_hook(HttpRejectHook h) { on_reject_ = std::move(h); }
  int open_connections() const { return conns_.load(); }

 private:
  bool process_and_close_socket(socket_t sock) override;
  HttpLimits lim_;
  HttpRejectHook on_reject_;
  std::atomic<int> conns_{0};
};

}  // namespace samq::serve
