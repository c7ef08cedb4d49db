// Store tests in one process: TcpStore (server + clients), FileStore,
// PrefixStore, authentication, malformed messages, the wire parser.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <thread>

#include "comm/socket_util.h"
#include "comm/store_protocol.h"
#include "comm/store_server.h"
#include "dtrain/comm/store.h"
#include "dtrain/error.h"

using namespace dtrain;
using namespace dtrain::comm;
using namespace std::chrono_literals;

namespace {

// Test tokens: random hex of 128+ bits, as the store requires.
const std::string kToken = "3f9a1c07d2b84e6590a7c3e1f4b2d8069e5c71a3";
const std::string kOtherToken = "c4e8a2f61b9d07355e2a9c8f14d6b3a0";

TcpStoreOptions server_options(const std::string& token = kToken) {
  TcpStoreOptions o;
  o.is_server = true;
  o.port = 0;
  o.timeout = 5s;
  o.auth_token = token;
  o.rank = 0;
  return o;
}

TcpStoreOptions client_options(int port, const std::string& token = kToken) {
  TcpStoreOptions o;
  o.port = port;
  o.timeout = 5s;
  o.auth_token = token;
  return o;
}

void exercise(Store& a, Store& b) {
  a.set("k", std::string("v\0w", 3));
  CHECK(b.get("k") == std::string("v\0w", 3));
  CHECK_FALSE(b.try_get("missing").has_value());
  CHECK(a.add("n", 5) == 5);
  CHECK(b.add("n", -2) == 3);
  CHECK(b.check({"k", "n"}));
  CHECK_FALSE(b.check({"k", "missing"}));
  CHECK(a.delete_key("k"));
  CHECK_FALSE(b.delete_key("k"));
  std::thread later([&] {
    std::this_thread::sleep_for(50ms);
    a.set("late", "1");
  });
  b.wait({"late"}, 2s);
  later.join();
  CHECK_THROWS_WITH(b.get("never", 100ms), Catch::Contains("timed out") && Catch::Contains("'never'"));
  CHECK_THROWS_WITH(b.wait({"late", "never2"}, 100ms), Catch::Contains("never2"));
}

}  // namespace

TEST_CASE("TcpStore: set/get/add/check/delete/wait between two clients", "[comm][store]") {
  TcpStore server(server_options());
  TcpStore client(client_options(server.port()));
  exercise(server, client);
}

TEST_CASE("FileStore and PrefixStore behave like the TCP store", "[comm][store]") {
  const auto dir = std::filesystem::temp_directory_path() / ("dtrain_fs_" + std::to_string(::getpid()));
  {
    auto a = std::make_shared<FileStore>(dir.string(), 5s);
    FileStore b(dir.string(), 5s);
    exercise(*a, b);
    PrefixStore p("sub", a);
    p.set("x", "1");
    CHECK(a->get("sub/x") == "1");
    CHECK(p.check({"x"}));
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("TcpStore refuses a wrong or missing token, and a server needs one", "[comm][store][auth]") {
  TcpStore server(server_options(kToken));
  const auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH(TcpStore(client_options(server.port(), kOtherToken)),
                    Catch::Contains("refused this process") && Catch::Contains("DTRAIN_AUTH_TOKEN"));
  ::unsetenv("DTRAIN_AUTH_TOKEN");
  CHECK_THROWS_WITH(TcpStore(client_options(server.port(), "")), Catch::Contains("DTRAIN_AUTH_TOKEN is not set"));
  CHECK(std::chrono::steady_clock::now() - start < 2s);
  // The server still serves the right token.
  TcpStore ok(client_options(server.port(), kToken));
  ok.set("a", "b");
  CHECK(server.get("a") == "b");
  CHECK_THROWS_WITH(TcpStore(server_options("")), Catch::Contains("DTRAIN_AUTH_TOKEN is not set"));
}

TEST_CASE("TcpStore: a malformed or oversized message closes only that connection", "[comm][store]") {
  TcpStore server(server_options());
  TcpStore good(client_options(server.port()));
  for (const std::string& junk : {std::string("\xff\xff\xff\x7f", 4), std::string("\x05\x00\x00\x00\x63zzzz", 9),
                                  std::string("\x00\x00\x00\x00", 4)}) {
    auto fd = net::connect_once("127.0.0.1", server.port(), net::deadline_after(2s));
    net::write_all(fd.get(), junk.data(), junk.size(), net::deadline_after(2s));
    char c;
    // The server closes it: recv sees EOF (0) or a reset, within the handshake limit.
    timeval tv{6, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    CHECK(::recv(fd.get(), &c, 1, 0) <= 0);
  }
  good.set("still", "works");
  CHECK(server.get("still") == "works");
}

TEST_CASE("store protocol round-trips and rejects malformed bodies", "[comm][store]") {
  protocol::Message m;
  m.type = protocol::MessageType::check;
  m.keys = {"a", "bb", std::string(100, 'c')};
  const std::string frame = protocol::encode(m);
  const auto* p = reinterpret_cast<const uint8_t*>(frame.data());
  REQUIRE(protocol::parse_length(p) == frame.size() - 4);
  auto back = protocol::parse_body(p + 4, frame.size() - 4);
  CHECK(back.keys == m.keys);
  // Truncated, trailing bytes, unknown type, oversized value.
  CHECK_THROWS_AS(protocol::parse_body(p + 4, frame.size() - 5), protocol::ProtocolError);
  std::string extra = frame.substr(4) + "x";
  CHECK_THROWS_AS(protocol::parse_body(reinterpret_cast<const uint8_t*>(extra.data()), extra.size()),
                  protocol::ProtocolError);
  const uint8_t unknown[] = {99};
  CHECK_THROWS_AS(protocol::parse_body(unknown, 1), protocol::ProtocolError);
  const uint8_t huge_len[] = {0xff, 0xff, 0xff, 0xff};
  CHECK_THROWS_AS(protocol::parse_length(huge_len), protocol::ProtocolError);
  // A hello is exactly the largest frame a server reads before authentication.
  protocol::Message hello;
  hello.type = protocol::MessageType::client_hello;
  hello.nonce = std::string(protocol::kNonceBytes, 'n');
  hello.client_id = std::string(protocol::kClientIdBytes, 'c');
  CHECK(protocol::encode_body(hello).size() == protocol::kMaxHandshakeBodyBytes);
  const uint8_t big_value[] = {10, 1, 0, 0, 0, 'k', 0xff, 0xff, 0xff, 0x0f};
  CHECK_THROWS_WITH(protocol::parse_body(big_value, sizeof(big_value)), Catch::Contains("exceeds the limit"));
}

TEST_CASE("TcpStore refuses tokens under 128 bits and says how to make one", "[comm][store][auth]") {
  for (const std::string& weak :
       {std::string("a"), std::string("s3cret"), std::string("0123456789abcdef0123456789abcde"), std::string(40, '0'),
        std::string("correct horse battery staple, quite long")}) {
    INFO(weak);
    CHECK_THROWS_WITH(TcpStore(server_options(weak)),
                      Catch::Contains("DTRAIN_AUTH_TOKEN") && Catch::Contains("dtrain-run --new-token"));
  }
  TcpStore server(server_options());
  CHECK_THROWS_WITH(TcpStore(client_options(server.port(), "s3cret")), Catch::Contains("dtrain-run --new-token"));
}

TEST_CASE("TcpStore: values up to 16 MiB and many clients through one server thread", "[comm][store]") {
  TcpStore server(server_options());
  std::vector<std::unique_ptr<TcpStore>> clients;
  clients.reserve(20);
  for (int i = 0; i < 20; ++i) clients.push_back(std::make_unique<TcpStore>(client_options(server.port())));
  const std::string big(16u << 20, 'x');
  clients[3]->set("big", big);
  CHECK(clients[17]->get("big") == big);
  std::vector<std::thread> adders;
  adders.reserve(clients.size());
  for (auto& c : clients)
    adders.emplace_back([&c] {
      for (int i = 0; i < 50; ++i) c->add("counter", 1);
    });
  for (auto& t : adders) t.join();
  CHECK(server.add("counter", 0) == 20 * 50);
}

namespace {
// A connection from a chosen loopback address; -1 if connect failed.
net::Fd connect_from(const char* source, int port) {
  net::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in from{}, to{};
  from.sin_family = to.sin_family = AF_INET;
  ::inet_pton(AF_INET, source, &from.sin_addr);
  ::inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
  to.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&from), sizeof(from)) != 0 ||
      ::connect(fd.get(), reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0)
    return net::Fd();
  return fd;
}
// Seconds until the server closes `fd` (EOF or reset), at most `limit`.
double seconds_until_closed(int fd, double limit) {
  const auto start = std::chrono::steady_clock::now();
  pollfd p{fd, POLLIN, 0};
  ::poll(&p, 1, static_cast<int>(limit * 1000));
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

TEST_CASE("StoreServer caps unauthenticated connections in all and per address, and times out handshakes",
          "[comm][store][security]") {
  StoreServerLimits limits;
  limits.max_unauthenticated = 4;
  limits.max_unauthenticated_per_address = 2;
  limits.handshake_timeout = 1500ms;
  StoreServer server("127.0.0.1", 0, false, kToken, limits);
  {
    TcpStore first(client_options(server.port()));  // the server's thread is up and serving
  }
  auto a1 = connect_from("127.0.0.2", server.port());
  auto a2 = connect_from("127.0.0.2", server.port());
  auto a3 = connect_from("127.0.0.2", server.port());  // over the per-address cap: closed at once
  REQUIRE(a3.valid());
  CHECK(seconds_until_closed(a3.get(), 3) < 0.5);
  auto b1 = connect_from("127.0.0.3", server.port());
  auto b2 = connect_from("127.0.0.3", server.port());
  auto c1 = connect_from("127.0.0.4", server.port());  // over the total cap: closed at once
  REQUIRE(c1.valid());
  CHECK(seconds_until_closed(c1.get(), 3) < 0.5);
  // The held ones are closed when their handshake time is up.
  const double held = seconds_until_closed(a1.get(), 5);
  CHECK(held > 0.4);
  CHECK(held < 3.0);
  // Then a member gets in, and the slots are free again.
  TcpStoreOptions o = client_options(server.port());
  TcpStore member(o);
  member.set("in", "yes");
  CHECK(member.get("in") == "yes");
}

TEST_CASE("StoreServer closes a connection declaring a frame over the hello size before authentication",
          "[comm][store][security]") {
  StoreServer server("127.0.0.1", 0, false, kToken);
  auto fd = net::connect_once("127.0.0.1", server.port(), net::deadline_after(2s));
  const std::string declare("\x43\x00\x00\x00", 4);  // 67 bytes: one more than a hello has
  net::write_all(fd.get(), declare.data(), declare.size(), net::deadline_after(2s));
  CHECK(seconds_until_closed(fd.get(), 3) < 0.5);
}

TEST_CASE("StoreServer keeps serving after running out of file descriptors", "[comm][store][security]") {
  // The server runs in a child process whose descriptor limit is 64; the
  // test holds 150 connections to it, then lets them go.
  char log_path[] = "/tmp/dtrain_store_emfile_XXXXXX";
  const int log_fd = ::mkstemp(log_path);
  int ports[2];
  REQUIRE(::pipe(ports) == 0);
  const pid_t child = ::fork();
  if (child == 0) {
    ::dup2(log_fd, 2);
    rlimit limit{64, 64};
    ::setrlimit(RLIMIT_NOFILE, &limit);
    StoreServerLimits limits;
    limits.max_unauthenticated = limits.max_unauthenticated_per_address = 1000;  // the fd limit comes first
    limits.handshake_timeout = 20s;
    StoreServer server("127.0.0.1", 0, false, kToken, limits);
    const int port = server.port();
    (void)!::write(ports[1], &port, sizeof(port));
    std::this_thread::sleep_for(30s);
    ::_exit(0);
  }
  ::close(log_fd);
  int port = 0;
  REQUIRE(::read(ports[0], &port, sizeof(port)) == sizeof(port));
  std::vector<net::Fd> held;
  held.reserve(150);
  for (int i = 0; i < 150; ++i) held.push_back(net::connect_once("127.0.0.1", port, net::deadline_after(2s)));
  std::this_thread::sleep_for(500ms);
  held.clear();  // the server sees them close, frees their descriptors, accepts the rest
  std::this_thread::sleep_for(300ms);
  bool served = false;
  try {
    TcpStore member(client_options(port));
    member.set("after", "emfile");
    served = member.get("after") == "emfile";
  } catch (const std::exception& e) {
    INFO(e.what());
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  std::ifstream in(log_path);
  const std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ::unlink(log_path);
  INFO(log);
  CHECK(served);
  CHECK(log.find("accept failed: Too many open files; still serving") != std::string::npos);
}
