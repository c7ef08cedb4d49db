// Internal: what protects a TCP store connection after its handshake.
//
// The handshake (tcp_store.cpp, store_server.cpp) ends with both sides
// holding the transcript (the hello's and the challenge's exact bodies) and
// knowing that the other side holds the job key K. From K and the transcript
// both derive two fresh 32-byte keys, one per direction. Every later frame is
// sealed with an AEAD (AES-256-GCM where both ends have AES-NI, else
// ChaCha20-Poly1305, the choice being part of the transcript) whose nonce is
// an implicit per-direction counter and whose associated data is the frame's
// length prefix. So a frame that was changed, replayed, reordered, dropped
// or cut short fails to open, and the connection is closed without acting
// on it. A different connection has different keys, so nothing recorded
// from one opens on another.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace dtrain::comm::session {

// Cipher bits offered in the hello; exactly one is chosen by the server.
constexpr uint8_t kChaCha20Poly1305 = 1;
constexpr uint8_t kAes256Gcm = 2;
// No protection (same framing, tag bytes left zero): exists only so that the
// store benchmark can measure what sealing costs in the same run. A process
// offers and accepts it only after allow_plaintext_for_benchmark(true), so
// it cannot be negotiated with a process that did not call it.
constexpr uint8_t kPlaintextForBenchmark = 4;
void allow_plaintext_for_benchmark(bool allow);
constexpr size_t kTagBytes = 16;
constexpr size_t kKeyBytes = 32;

// The ciphers this machine can run (ChaCha20-Poly1305 always).
uint8_t supported_ciphers();
// Server: the cipher for a client offering `offered`; 0 when none is shared.
uint8_t choose_cipher(uint8_t offered);
const char* cipher_name(uint8_t cipher);

struct SessionKeys {
  std::string client_to_server;
  std::string server_to_client;
};
// Both directions' keys from the job key and the handshake transcript.
SessionKeys derive_session_keys(const std::string& job_key, const std::string& transcript);

// One direction of a session. A Channel either seals (sender) or opens
// (receiver); its counter advances by one per frame.
class Channel {
 public:
  Channel(uint8_t cipher, std::string key);
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // The whole frame (length prefix + ciphertext) for a plain body.
  std::string seal(const std::string& body);
  // Opens a frame's ciphertext in place, given its length prefix; on success
  // the first size - kTagBytes bytes hold the body. False when the frame is
  // not the next one the peer sealed with this key (tampered, replayed,
  // reordered, or from someone else); the counter does not move then.
  bool open(const uint8_t prefix[4], uint8_t* ciphertext, size_t size);

  uint64_t frames() const { return counter_; }

 private:
  void nonce(uint8_t out[12]) const;
  uint8_t cipher_;
  std::string key_;
  uint64_t counter_ = 0;
};

}  // namespace dtrain::comm::session
