// The job key, handshake proofs and token rules of the TCP store (see store_auth.h).
#include "comm/store_auth.h"

#include <sodium.h>

#include <cctype>
#include <set>

#include "comm/store_protocol.h"
#include "dtrain/error.h"

namespace dtrain::comm::auth {

namespace {
void ensure_sodium() {
  static const int rc = sodium_init();  // thread-safe, idempotent
  DTRAIN_CHECK(rc >= 0, "libsodium failed to initialise");
}

std::string labelled(const char* label, const std::string& message) {
  return std::string(label) + '\0' + message;
}
}  // namespace

std::string derive_key(const std::string& token) {
  ensure_sodium();
  static_assert(crypto_auth_KEYBYTES == 32, "HMAC-SHA512-256 key size");
  static const char kLabel[] = "dtrain-store-auth-v1";
  std::string key(crypto_auth_KEYBYTES, '\0');
  crypto_generichash(reinterpret_cast<unsigned char*>(key.data()), key.size(),
                     reinterpret_cast<const unsigned char*>(token.data()), token.size(),
                     reinterpret_cast<const unsigned char*>(kLabel), sizeof(kLabel) - 1);
  return key;
}

std::string random_bytes(size_t n) {
  ensure_sodium();
  std::string out(n, '\0');
  randombytes_buf(out.data(), out.size());
  return out;
}

std::string random_nonce() {
  return random_bytes(protocol::kNonceBytes);
}

std::string proof(const std::string& key, const char* label, const std::string& message) {
  ensure_sodium();
  static_assert(crypto_auth_BYTES == protocol::kProofBytes, "proof size");
  const std::string m = labelled(label, message);
  std::string mac(crypto_auth_BYTES, '\0');
  crypto_auth(reinterpret_cast<unsigned char*>(mac.data()), reinterpret_cast<const unsigned char*>(m.data()), m.size(),
              reinterpret_cast<const unsigned char*>(key.data()));
  return mac;
}

bool verify(const std::string& key, const char* label, const std::string& message, const std::string& candidate) {
  ensure_sodium();
  if (candidate.size() != crypto_auth_BYTES) return false;
  const std::string m = labelled(label, message);
  return crypto_auth_verify(reinterpret_cast<const unsigned char*>(candidate.data()),
                            reinterpret_cast<const unsigned char*>(m.data()), m.size(),
                            reinterpret_cast<const unsigned char*>(key.data())) == 0;
}

void check_token_strength(const std::string& token) {
  static const char* kHowTo =
      "Make one with `dtrain-run --new-token` (or `openssl rand -hex 32`) and give every rank the same value";
  DTRAIN_CHECK(!token.empty(), "DTRAIN_AUTH_TOKEN is not set: the store refuses to run without a job secret. ", kHowTo);
  size_t hex = 0;
  std::set<char> distinct;
  for (char c : token) {
    if (std::isxdigit(static_cast<unsigned char>(c))) {
      ++hex;
      distinct.insert(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
  }
  DTRAIN_CHECK(hex == token.size(), "DTRAIN_AUTH_TOKEN must be random hex digits (it holds ", token.size() - hex,
               " other characters), at least ", kMinTokenBits / 4, " of them (", kMinTokenBits,
               " bits), so that it cannot be guessed. ", kHowTo);
  DTRAIN_CHECK(hex >= kMinTokenBits / 4, "DTRAIN_AUTH_TOKEN is too weak: ", hex, " hex digits carry at most ", hex * 4,
               " bits; at least ", kMinTokenBits / 4, " random hex digits (", kMinTokenBits, " bits) are required. ",
               kHowTo);
  DTRAIN_CHECK(distinct.size() >= 6, "DTRAIN_AUTH_TOKEN is too weak: it uses only ", distinct.size(),
               " different hex digits, which random digits all but never do. ", kHowTo);
}

std::string new_token() {
  const std::string raw = random_bytes(32);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

}  // namespace dtrain::comm::auth
