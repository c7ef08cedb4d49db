#include "comm/store_auth.h"

#include <sodium.h>

#include "comm/store_protocol.h"
#include "dtrain/error.h"

namespace dtrain::comm::auth {

namespace {
void ensure_sodium() {
  static const int rc = sodium_init();  // thread-safe, idempotent
  DTRAIN_CHECK(rc >= 0, "libsodium failed to initialise");
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

std::string random_nonce() {
  ensure_sodium();
  std::string n(protocol::kNonceBytes, '\0');
  randombytes_buf(n.data(), n.size());
  return n;
}

std::string proof(const std::string& key, const char* label, const std::string& first, const std::string& second) {
  ensure_sodium();
  static_assert(crypto_auth_BYTES == protocol::kProofBytes, "proof size");
  const std::string message = std::string(label) + '\0' + first + second;
  std::string mac(crypto_auth_BYTES, '\0');
  crypto_auth(reinterpret_cast<unsigned char*>(mac.data()), reinterpret_cast<const unsigned char*>(message.data()),
              message.size(), reinterpret_cast<const unsigned char*>(key.data()));
  return mac;
}

bool verify(const std::string& key, const char* label, const std::string& first, const std::string& second,
            const std::string& candidate) {
  if (candidate.size() != crypto_auth_BYTES) return false;
  const std::string message = std::string(label) + '\0' + first + second;
  return crypto_auth_verify(reinterpret_cast<const unsigned char*>(candidate.data()),
                            reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                            reinterpret_cast<const unsigned char*>(key.data())) == 0;
}

}  // namespace dtrain::comm::auth
