// Internal: the TCP store's wire format.
//
// A frame is a little-endian u32 body length followed by the body; the body
// is a u8 message type and that type's fields. Strings are u32 length +
// bytes. Every length is checked against fixed limits before anything is
// allocated, and a body must be consumed exactly, so a malformed or oversized
// frame is a ProtocolError (the server then closes that one connection).
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

constexpr uint32_t kVersion = 1;
constexpr size_t kNonceBytes = 32;
constexpr size_t kProofBytes = 32;
constexpr size_t kMaxKeyBytes = 4096;
constexpr size_t kMaxValueBytes = 16u << 20;  // 16 MiB: NCCL ids and addresses are tiny
constexpr size_t kMaxKeysPerCheck = 4096;
constexpr size_t kMaxReasonBytes = 4096;
constexpr size_t kMaxBodyBytes = kMaxValueBytes + kMaxKeyBytes + 64;

enum class MessageType : uint8_t {
  // handshake
  client_hello = 1,      // version, nonce, rank
  server_challenge = 2,  // nonce, proof
  client_proof = 3,      // proof
  auth_ok = 4,
  auth_fail = 5,  // text
  // requests
  set = 10,         // key, value
  get = 11,         // key
  add = 12,         // key, number
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
  std::string nonce;  // kNonceBytes raw bytes
  std::string proof;  // kProofBytes raw bytes
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
// Reads the length prefix; throws ProtocolError if it exceeds kMaxBodyBytes or is 0.
uint32_t parse_length(const uint8_t prefix[4]);

}  // namespace dtrain::comm::protocol
