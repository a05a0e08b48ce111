// Issue 17 item 2: a request has one deadline for its head and body together (not one per read,
// nor one per part), and a response one write budget for all its writes, so a client can hold
// a worker neither by trickling its request nor by reading its stream slowly.
#include <gtest/gtest.h>
#include <httplib.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "serve/fake_generator.h"
#include "serve/router.h"
#include "serve/server.h"

using namespace samq::serve;
using namespace std::chrono_literals;

namespace {

class Endless : public FakeGenerator {
 public:
  using FakeGenerator::FakeGenerator;
  bool is_eog(int32_t) const override { return false; }
};

struct Http {
  Metrics metrics;
  Server server;
  std::thread th;
  int port;
  Http(Router& router, ServerOptions opt) : server(with(opt), router, metrics) {
    port = server.bind();
    th = std::thread([this] { server.run(); });
    httplib::Client c("127.0.0.1", port);
    for (int i = 0; i < 200; ++i) {
      if (auto r = c.Get("/ready"); r && r->status == 200) break;
      std::this_thread::sleep_for(10ms);
    }
  }
  static ServerOptions with(ServerOptions o) {
    o.port = 0;
    o.model_id = "m";
    o.http_threads = 8;
    o.drain_timeout_ms = 100;
    return o;
  }
  ~Http() {
    server.shutdown();
    th.join();
  }
};

int connect_to(int port, int rcvbuf = 0) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sends s a few bytes at a time, spread over `over`.
void trickle(int fd, const std::string& s, std::chrono::milliseconds over) {
  const size_t pieces = 10, step = (s.size() + pieces - 1) / pieces;
  for (size_t i = 0; i < s.size(); i += step) {
    ::send(fd, s.data() + i, std::min(step, s.size() - i), MSG_NOSIGNAL);
    std::this_thread::sleep_for(over / pieces);
  }
}

std::string read_all(int fd, std::chrono::milliseconds limit) {
  std::string out;
  const auto end = std::chrono::steady_clock::now() + limit;
  char buf[4096];
  while (std::chrono::steady_clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, size_t(n));
  }
  return out;
}

}  // namespace

TEST(Deadlines, OneDeadlineForHeadAndBodyTogether) {
  FakeGenerator gen({.step_ms = 1});
  Metrics metrics;
  LocalBackend prim(gen, {1, 1, 512}, &metrics);
  Router router(prim, nullptr, {}, &metrics);
  ServerOptions o;
  o.read_timeout_s = 2;
  Http h(router, o);
  const std::string body = R"({"prompt":"a","max_tokens":2,"temperature":0})";
  const std::string head = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  // Control: the same request sent at once is served.
  {
    int fd = connect_to(h.port);
    ASSERT_GE(fd, 0);
    const std::string all = head + body;
    ::send(fd, all.data(), all.size(), MSG_NOSIGNAL);
    EXPECT_NE(read_all(fd, 3s).find("HTTP/1.1 200"), std::string::npos);
    ::close(fd);
  }
  // Head in 1.5 s, body in 1.5 s: each part within --read-timeout-s, the whole request not.
  int fd = connect_to(h.port);
  ASSERT_GE(fd, 0);
  const auto t0 = std::chrono::steady_clock::now();
  trickle(fd, head, 1500ms);
  trickle(fd, body, 1500ms);
  const std::string resp = read_all(fd, 3s);
  ::close(fd);
  EXPECT_EQ(resp.find("HTTP/1.1 200"), std::string::npos) << "a request of 3 s passed a 2 s deadline:\n" << resp;
  EXPECT_TRUE(resp.find("HTTP/1.1 408") != std::string::npos || resp.find("HTTP/1.1 400") != std::string::npos || resp.empty())
      << resp;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  // The server still answers.
  httplib::Client c("127.0.0.1", h.port);
  auto r = c.Get("/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(Deadlines, ASlowStreamReaderIsDroppedAfterTheWriteBudget) {
  Endless gen({.n_ctx = 8192, .step_ms = 5});
  Metrics metrics;
  LocalBackend prim(gen, {1, 1, 512}, &metrics);
  Router router(prim, nullptr, {}, &metrics);
  ServerOptions o;
  o.write_timeout_s = 1;
  Http h(router, o);
  // A small receive window, and a reader that takes 1 KiB every 300 ms: no single write waits
  // a whole second, but the stream (~45 KB/s of SSE) falls behind for good.
  int fd = connect_to(h.port, 2048);
  ASSERT_GE(fd, 0);
  const std::string body = R"({"prompt":"a","max_tokens":6000,"temperature":0,"stream":true})";
  const std::string req = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  const auto t0 = std::chrono::steady_clock::now();
  bool dropped = false;
  size_t got = 0;
  char buf[1024];
  while (std::chrono::steady_clock::now() - t0 < 15s) {
    std::this_thread::sleep_for(300ms);
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) got += size_t(n);
    if (h.server.in_flight() == 0 && gen.live_sequences() == 0) {
      dropped = true;
      break;
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ::close(fd);
  EXPECT_GT(got, 0u) << "the stream never started";
  EXPECT_TRUE(dropped) << "a reader " << s << " s behind still holds its worker and its slot";
  EXPECT_LT(s, 12.0);  // 6000 tokens at 5 ms would take 30 s
}
