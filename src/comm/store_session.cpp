// Session keys and sealed frames of the TCP store (see store_session.h).
#include "comm/store_session.h"

#include <sodium.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "comm/store_protocol.h"
#include "dtrain/error.h"

namespace dtrain::comm::session {

namespace {

void ensure_sodium() {
  static const int rc = sodium_init();  // thread-safe, idempotent
  DTRAIN_CHECK(rc >= 0, "libsodium failed to initialise");
}

const unsigned char* bytes(const std::string& s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

static_assert(crypto_aead_aes256gcm_KEYBYTES == kKeyBytes && crypto_aead_chacha20poly1305_ietf_KEYBYTES == kKeyBytes,
              "both ciphers take 32-byte keys");
static_assert(crypto_aead_aes256gcm_ABYTES == kTagBytes && crypto_aead_chacha20poly1305_ietf_ABYTES == kTagBytes,
              "both ciphers add a 16-byte tag");
static_assert(crypto_aead_aes256gcm_NPUBBYTES == 12 && crypto_aead_chacha20poly1305_ietf_NPUBBYTES == 12,
              "both ciphers take 12-byte nonces");

std::atomic<bool> g_plaintext{false};

}  // namespace

void allow_plaintext_for_benchmark(bool allow) {
  g_plaintext = allow;
}

uint8_t supported_ciphers() {
  ensure_sodium();
  if (g_plaintext) return kPlaintextForBenchmark;
  return kChaCha20Poly1305 | (crypto_aead_aes256gcm_is_available() ? kAes256Gcm : 0);
}

uint8_t choose_cipher(uint8_t offered) {
  const uint8_t shared = offered & supported_ciphers();
  if (shared & kPlaintextForBenchmark) return kPlaintextForBenchmark;
  if (shared & kAes256Gcm) return kAes256Gcm;  // several times faster with AES-NI
  if (shared & kChaCha20Poly1305) return kChaCha20Poly1305;
  return 0;
}

const char* cipher_name(uint8_t cipher) {
  return cipher == kAes256Gcm               ? "AES-256-GCM"
         : cipher == kChaCha20Poly1305      ? "ChaCha20-Poly1305"
         : cipher == kPlaintextForBenchmark ? "plaintext (benchmark)"
                                            : "none";
}

SessionKeys derive_session_keys(const std::string& job_key, const std::string& transcript) {
  ensure_sodium();
  static const char kLabel[] = "dtrain-store-session-v2";
  const std::string message = std::string(kLabel, sizeof(kLabel)) + transcript;
  unsigned char out[2 * kKeyBytes];
  crypto_generichash(out, sizeof(out), bytes(message), message.size(), bytes(job_key), job_key.size());
  SessionKeys keys{std::string(reinterpret_cast<char*>(out), kKeyBytes),
                   std::string(reinterpret_cast<char*>(out) + kKeyBytes, kKeyBytes)};
  sodium_memzero(out, sizeof(out));
  return keys;
}

Channel::Channel(uint8_t cipher, std::string key) : cipher_(cipher), key_(std::move(key)) {
  ensure_sodium();
  DTRAIN_CHECK(cipher_ == kChaCha20Poly1305 || (cipher_ == kAes256Gcm && crypto_aead_aes256gcm_is_available()) ||
                   (cipher_ == kPlaintextForBenchmark && g_plaintext),
               "store session: cipher ", static_cast<int>(cipher_), " is not available on this machine");
  DTRAIN_CHECK(key_.size() == kKeyBytes, "store session: key must be ", kKeyBytes, " bytes");
}

Channel::~Channel() {
  sodium_memzero(key_.data(), key_.size());
}

void Channel::nonce(uint8_t out[12]) const {
  std::memset(out, 0, 12);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(counter_ >> (8 * i));
}

std::string Channel::seal(const std::string& body) {
  DTRAIN_CHECK(counter_ != UINT64_MAX, "store session: frame counter exhausted; reconnect");
  const size_t n = body.size() + kTagBytes;
  DTRAIN_CHECK(n <= UINT32_MAX, "store session: frame of ", n, " bytes is too large");
  std::string frame = protocol::length_prefix(static_cast<uint32_t>(n));
  frame.resize(4 + n);
  auto* out = reinterpret_cast<unsigned char*>(frame.data());
  uint8_t iv[12];
  nonce(iv);
  unsigned long long written = 0;
  if (cipher_ == kPlaintextForBenchmark)
    std::copy(body.begin(), body.end(), out + 4);  // and a zero tag
  else if (cipher_ == kAes256Gcm)
    crypto_aead_aes256gcm_encrypt(out + 4, &written, bytes(body), body.size(), out, 4, nullptr, iv, bytes(key_));
  else
    crypto_aead_chacha20poly1305_ietf_encrypt(out + 4, &written, bytes(body), body.size(), out, 4, nullptr, iv,
                                              bytes(key_));
  ++counter_;
  return frame;
}

bool Channel::open(const uint8_t prefix[4], uint8_t* ciphertext, size_t size) {
  if (size < kTagBytes || counter_ == UINT64_MAX) return false;
  uint8_t iv[12];
  nonce(iv);
  unsigned long long written = 0;
  const int rc =
      cipher_ == kPlaintextForBenchmark ? 0
      : cipher_ == kAes256Gcm
          ? crypto_aead_aes256gcm_decrypt(ciphertext, &written, nullptr, ciphertext, size, prefix, 4, iv, bytes(key_))
          : crypto_aead_chacha20poly1305_ietf_decrypt(ciphertext, &written, nullptr, ciphertext, size, prefix, 4, iv,
                                                      bytes(key_));
  if (rc != 0) return false;
  ++counter_;
  return true;
}

}  // namespace dtrain::comm::session
