#include "comm/store_protocol.h"

namespace dtrain::comm::protocol {

namespace {

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xffu));
}
void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xffu));
}
void put_bytes(std::string& out, const std::string& s) {
  put_u32(out, static_cast<uint32_t>(s.size()));
  out += s;
}

// Bounds-checked reader over one body.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint8_t u8() {
    need(1, "u8");
    return data_[pos_++];
  }
  uint32_t u32() {
    need(4, "u32");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(data_[pos_ + i]) << (8 * i);
    pos_ += 4;
    return v;
  }
  uint64_t u64() {
    need(8, "u64");
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(data_[pos_ + i]) << (8 * i);
    pos_ += 8;
    return v;
  }
  std::string bytes(size_t max, const char* what) {
    const uint32_t n = u32();
    if (n > max)
      throw ProtocolError(std::string(what) + " of " + std::to_string(n) + " bytes exceeds the limit of " +
                          std::to_string(max));
    need(n, what);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }
  std::string fixed(size_t n, const char* what) {
    std::string s = bytes(n, what);
    if (s.size() != n) throw ProtocolError(std::string(what) + " must be " + std::to_string(n) + " bytes");
    return s;
  }
  void finish() const {
    if (pos_ != size_) throw ProtocolError(std::to_string(size_ - pos_) + " trailing bytes after the message");
  }

 private:
  void need(size_t n, const char* what) const {
    if (size_ - pos_ < n) throw ProtocolError(std::string("message truncated while reading ") + what);
  }
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace

const char* message_type_name(MessageType type) {
  switch (type) {
    case MessageType::client_hello:
      return "client_hello";
    case MessageType::server_challenge:
      return "server_challenge";
    case MessageType::client_proof:
      return "client_proof";
    case MessageType::auth_ok:
      return "auth_ok";
    case MessageType::auth_fail:
      return "auth_fail";
    case MessageType::set:
      return "set";
    case MessageType::get:
      return "get";
    case MessageType::add:
      return "add";
    case MessageType::check:
      return "check";
    case MessageType::delete_key:
      return "delete";
    case MessageType::bye:
      return "bye";
    case MessageType::ok:
      return "ok";
    case MessageType::value:
      return "value";
    case MessageType::number:
      return "number";
    case MessageType::boolean:
      return "boolean";
    case MessageType::error:
      return "error";
  }
  return "unknown";
}

std::string encode_body(const Message& m) {
  std::string body;
  body.push_back(static_cast<char>(m.type));
  switch (m.type) {
    case MessageType::client_hello:
      put_u32(body, m.version);
      put_bytes(body, m.nonce);
      put_u32(body, static_cast<uint32_t>(m.rank));
      put_bytes(body, m.client_id);
      body.push_back(static_cast<char>(m.ciphers));
      break;
    case MessageType::server_challenge:
      put_bytes(body, m.nonce);
      body.push_back(static_cast<char>(m.ciphers));
      break;
    case MessageType::client_proof:
    case MessageType::auth_ok:
      put_bytes(body, m.proof);
      break;
    case MessageType::auth_fail:
    case MessageType::error:
      put_bytes(body, m.text);
      break;
    case MessageType::set:
      put_bytes(body, m.key);
      put_bytes(body, m.value);
      break;
    case MessageType::get:
    case MessageType::delete_key:
      put_bytes(body, m.key);
      break;
    case MessageType::add:
      put_bytes(body, m.key);
      put_u64(body, static_cast<uint64_t>(m.number));
      put_u64(body, m.request_id);
      break;
    case MessageType::check:
      put_u32(body, static_cast<uint32_t>(m.keys.size()));
      for (const auto& k : m.keys) put_bytes(body, k);
      break;
    case MessageType::value:
      body.push_back(m.found ? 1 : 0);
      put_bytes(body, m.value);
      break;
    case MessageType::number:
      put_u64(body, static_cast<uint64_t>(m.number));
      break;
    case MessageType::boolean:
      body.push_back(m.found ? 1 : 0);
      break;
    case MessageType::bye:
    case MessageType::ok:
      break;
  }
  return body;
}

std::string length_prefix(uint32_t n) {
  std::string out;
  put_u32(out, n);
  return out;
}

std::string encode(const Message& m) {
  const std::string body = encode_body(m);
  return length_prefix(static_cast<uint32_t>(body.size())) + body;
}

uint32_t parse_length(const uint8_t prefix[4], size_t limit) {
  const uint32_t n = static_cast<uint32_t>(prefix[0]) | static_cast<uint32_t>(prefix[1]) << 8 |
                     static_cast<uint32_t>(prefix[2]) << 16 | static_cast<uint32_t>(prefix[3]) << 24;
  if (n == 0) throw ProtocolError("empty message");
  if (n > limit)
    throw ProtocolError("message of " + std::to_string(n) + " bytes exceeds the limit of " + std::to_string(limit));
  return n;
}

Message parse_body(const uint8_t* data, size_t size) {
  if (size > kMaxBodyBytes) throw ProtocolError("message too large");
  Reader r(data, size);
  Message m;
  const uint8_t type = r.u8();
  m.type = static_cast<MessageType>(type);
  switch (m.type) {
    case MessageType::client_hello:
      m.version = r.u32();
      m.nonce = r.fixed(kNonceBytes, "nonce");
      m.rank = static_cast<int32_t>(r.u32());
      if (m.rank < -1) throw ProtocolError("rank must be -1 or non-negative");
      m.client_id = r.fixed(kClientIdBytes, "client id");
      m.ciphers = r.u8();
      break;
    case MessageType::server_challenge:
      m.nonce = r.fixed(kNonceBytes, "nonce");
      m.ciphers = r.u8();
      break;
    case MessageType::client_proof:
    case MessageType::auth_ok:
      m.proof = r.fixed(kProofBytes, "proof");
      break;
    case MessageType::auth_fail:
    case MessageType::error:
      m.text = r.bytes(kMaxReasonBytes, "text");
      break;
    case MessageType::set:
      m.key = r.bytes(kMaxKeyBytes, "key");
      m.value = r.bytes(kMaxValueBytes, "value");
      break;
    case MessageType::get:
    case MessageType::delete_key:
      m.key = r.bytes(kMaxKeyBytes, "key");
      break;
    case MessageType::add:
      m.key = r.bytes(kMaxKeyBytes, "key");
      m.number = static_cast<int64_t>(r.u64());
      m.request_id = r.u64();
      break;
    case MessageType::check: {
      const uint32_t n = r.u32();
      if (n > kMaxKeysPerCheck) throw ProtocolError("check of " + std::to_string(n) + " keys exceeds the limit");
      for (uint32_t i = 0; i < n; ++i) m.keys.push_back(r.bytes(kMaxKeyBytes, "key"));
      break;
    }
    case MessageType::value: {
      const uint8_t found = r.u8();
      if (found > 1) throw ProtocolError("found flag must be 0 or 1");
      m.found = found == 1;
      m.value = r.bytes(kMaxValueBytes, "value");
      break;
    }
    case MessageType::number:
      m.number = static_cast<int64_t>(r.u64());
      break;
    case MessageType::boolean: {
      const uint8_t found = r.u8();
      if (found > 1) throw ProtocolError("boolean must be 0 or 1");
      m.found = found == 1;
      break;
    }
    case MessageType::bye:
    case MessageType::ok:
      break;
    default:
      throw ProtocolError("unknown message type " + std::to_string(type));
  }
  r.finish();
  return m;
}

}  // namespace dtrain::comm::protocol
