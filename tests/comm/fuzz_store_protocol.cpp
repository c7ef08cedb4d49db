// libFuzzer target for the TCP store's wire format: any byte string must
// either parse or raise ProtocolError (never crash, never over-read), and a
// parsed message must re-encode to a frame that parses to the same message.
// The handshake messages (the hello above all, the only thing a stranger's
// bytes reach before authentication) are also parsed under the
// pre-authentication frame limit.
//
// Built with -DDTRAIN_FUZZ_SESSION (and src/comm/store_session.cpp,
// src/core/error.cpp... -lsodium) it also fuzzes the sealed framing: input
// bytes opened as a sealed frame must fail (no forgery) without crashing, and
// a sealed body must open to itself once and only once (no replay), and not
// at all after any single bit of it is flipped.
#include <cstdlib>
#include <cstring>

#include "comm/store_protocol.h"
#ifdef DTRAIN_FUZZ_SESSION
#include "comm/store_session.h"
#endif

using namespace dtrain::comm::protocol;

namespace {

void parse_and_round_trip(const uint8_t* data, size_t size) {
  try {
    const Message m = parse_body(data, size);
    const std::string frame = encode(m);
    const auto* p = reinterpret_cast<const uint8_t*>(frame.data());
    if (parse_length(p) != frame.size() - 4) std::abort();
    const Message again = parse_body(p + 4, frame.size() - 4);
    if (encode(again) != frame) std::abort();
    const bool handshake = m.type == MessageType::client_hello || m.type == MessageType::server_challenge ||
                           m.type == MessageType::client_proof || m.type == MessageType::auth_ok;
    // Every well-formed handshake message fits the pre-authentication limit.
    if (handshake && parse_length(p, kMaxHandshakeBodyBytes) != frame.size() - 4) std::abort();
  } catch (const ProtocolError&) {
  }
}

#ifdef DTRAIN_FUZZ_SESSION
void fuzz_sealed(const uint8_t* data, size_t size) {
  using namespace dtrain::comm::session;
  const std::string key(kKeyBytes, 'k');
  const uint8_t cipher = (size > 0 && (data[0] & 1)) ? kChaCha20Poly1305 : choose_cipher(supported_ciphers());
  // Arbitrary bytes as a sealed frame: must never open.
  if (size >= 4) {
    Channel rx(cipher, key);
    std::string copy(reinterpret_cast<const char*>(data) + 4, size - 4);
    if (rx.open(data, reinterpret_cast<uint8_t*>(copy.data()), copy.size())) std::abort();
  }
  // Sealed, then opened: once, not twice, not after a bit flip.
  const std::string body(reinterpret_cast<const char*>(data), size);
  Channel tx(cipher, key), rx(cipher, key);
  const std::string frame = tx.seal(body);
  std::string ct = frame.substr(4);
  const auto* prefix = reinterpret_cast<const uint8_t*>(frame.data());
  std::string flipped = frame;
  flipped[(size * 7919) % flipped.size()] ^= static_cast<char>(1 << (size % 8));
  std::string flipped_ct = flipped.substr(4);
  if (rx.open(reinterpret_cast<const uint8_t*>(flipped.data()), reinterpret_cast<uint8_t*>(flipped_ct.data()),
              flipped_ct.size()))
    std::abort();
  if (!rx.open(prefix, reinterpret_cast<uint8_t*>(ct.data()), ct.size())) std::abort();
  if (ct.compare(0, body.size(), body) != 0) std::abort();
  std::string replay = frame.substr(4);
  if (rx.open(prefix, reinterpret_cast<uint8_t*>(replay.data()), replay.size())) std::abort();
}
#endif

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size >= 4) {
    try {
      (void)parse_length(data);
    } catch (const ProtocolError&) {
    }
  }
  parse_and_round_trip(data, size);
#ifdef DTRAIN_FUZZ_SESSION
  fuzz_sealed(data, size);
#endif
  return 0;
}
