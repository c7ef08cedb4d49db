// Internal: challenge-response for the TCP store (libsodium crypto_auth,
// HMAC-SHA512-256). Both sides send a fresh random nonce; each proves it
// holds the job key by MACing both nonces under a role label, so a proof
// cannot be replayed and the token never crosses the wire.
#pragma once

#include <string>

namespace dtrain::comm::auth {

// 32-byte key = BLAKE2b(token) under a dtrain domain label.
std::string derive_key(const std::string& token);
std::string random_nonce();
// MAC over label || first || second.
std::string proof(const std::string& key, const char* label, const std::string& first, const std::string& second);
// Constant-time check of a proof.
bool verify(const std::string& key, const char* label, const std::string& first, const std::string& second,
            const std::string& candidate);

}  // namespace dtrain::comm::auth
