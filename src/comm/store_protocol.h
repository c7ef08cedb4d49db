// Internal: the TCP store's wire format.
//
// A frame is a little-endian u32 body length followed by the body; the body
// is a u8 message type and that type's fields. Strings are u32 length +
// bytes. Every length is checked against fixed limits before anything is
// allocated, and a body must be consumed exactly, so a malformed or oversized
// frame is a ProtocolError (the server then closes that one connection).
//
// The four handshake messages travel as plain frames of at most
// kMaxHandshakeBodyBytes; everything after them travels sealed (encrypted and
// authenticated, see store_session.h): the frame's body is then the
// ciphertext of a body as described here.
//
// This file depends on the standard library only: the fuzz target compiles it
// on its own (tests/comm/fuzz_store_protocol.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace dtrain::comm::protocol {

constexpr uint32_t kVersion = 2;
constexpr size_t kNonceBytes = 32;
constexpr size_t kProofBytes = 32;
constexpr size_t kClientIdBytes = 16;
// Largest body a server reads before the peer has proved it holds the key:
// exactly a hello's (type, version, nonce, rank, client id, ciphers; 66
// bytes), the largest handshake message.
constexpr size_t kMaxHandshakeBodyBytes = 1 + 4 + (4 + kNonceBytes) + 4 + (4 + kClientIdBytes) + 1;
constexpr size_t kMaxKeyBytes = 4096;
constexpr size_t kMaxValueBytes = 16u << 20;  // 16 MiB: NCCL ids and addresses are tiny
constexpr size_t kMaxKeysPerCheck = 4096;
constexpr size_t kMaxReasonBytes = 4096;
constexpr size_t kMaxBodyBytes = kMaxValueBytes + kMaxKeyBytes + 64;

enum class MessageType : uint8_t {
  // handshake (plain frames)
  client_hello = 1,      // version, nonce, rank, client_id, ciphers
  server_challenge = 2,  // nonce, cipher
  client_proof = 3,      // proof
  auth_ok = 4,           // proof (the server's, sent only after the client's checked out)
  auth_fail = 5,         // text
  // requests (sealed)
  set = 10,         // key, value
  get = 11,         // key
  add = 12,         // key, number, request_id
  check = 13,       // keys
  delete_key = 14,  // key
  bye = 15,
  // replies
  ok = 20,
  value = 21,    // found, value
  number = 22,   // number
  boolean = 23,  // found
  error = 24,    // text
};

struct Message {
  MessageType type = MessageType::ok;
  uint32_t version = 0;
  int32_t rank = -1;
  std::string nonce;        // kNonceBytes raw bytes
  std::string proof;        // kProofBytes raw bytes
  std::string client_id;    // kClientIdBytes raw bytes: names a client across reconnects
  uint8_t ciphers = 0;      // hello: the ciphers the client offers (bit set); challenge: the one chosen
  uint64_t request_id = 0;  // add: a retried add with the same id is answered, not applied again
  std::string key;
  std::string value;
  std::string text;
  std::vector<std::string> keys;
  int64_t number = 0;
  bool found = false;
};

class ProtocolError : public std::runtime_error {
 public:
  explicit ProtocolError(const std::string& what) : std::runtime_error(what) {}
};

const char* message_type_name(MessageType type);

// Whole frame (length prefix + body) for a message.
std::string encode(const Message& message);
// Parses one body (without the length prefix). Throws ProtocolError.
Message parse_body(const uint8_t* data, size_t size);
// Reads the length prefix; throws ProtocolError if it exceeds `limit` or is 0.
uint32_t parse_length(const uint8_t prefix[4], size_t limit = kMaxBodyBytes);
// The body of a message (encode() without the length prefix).
std::string encode_body(const Message& message);
// The 4-byte little-endian length prefix of a body of n bytes.
std::string length_prefix(uint32_t n);

}  // namespace dtrain::comm::protocol
