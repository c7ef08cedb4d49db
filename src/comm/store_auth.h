// Internal: the job key and the proofs of the TCP store's handshake
// (libsodium: BLAKE2b for the key, crypto_auth = HMAC-SHA512-256 for proofs).
//
// Each side proves it holds the job key by MACing the whole transcript (the
// exact hello and challenge bodies: version, both nonces, the client's rank,
// client id and cipher offer, the server's cipher choice) under its role's
// label. Fresh nonces from both sides make every proof single-use, the role
// labels stop reflection, and the token itself never crosses the wire. The
// client proves first; the server's proof also covers the client's, so a
// stranger who connects learns nothing it could test guesses against.
#pragma once

#include <string>

namespace dtrain::comm::auth {

// Tokens carry at least this many bits (32 hex digits).
constexpr int kMinTokenBits = 128;
// Role labels of the two proofs.
constexpr const char* kClientLabel = "dtrain-store-client-v2";
constexpr const char* kServerLabel = "dtrain-store-server-v2";

// 32-byte key = BLAKE2b(token) under a dtrain domain label.
std::string derive_key(const std::string& token);
std::string random_bytes(size_t n);
std::string random_nonce();
// MAC over label || 0 || message.
std::string proof(const std::string& key, const char* label, const std::string& message);
// Constant-time check of a proof.
bool verify(const std::string& key, const char* label, const std::string& message, const std::string& candidate);

// Throws dtrain::Error, saying how to make a good one, unless `token` is at
// least 32 hex digits (128 bits) using at least 6 different digits (which
// random hex of that length does all but never; "0000..." or "abab..." do not).
void check_token_strength(const std::string& token);
// 32 random bytes as 64 lowercase hex digits (dtrain-run --new-token).
std::string new_token();

}  // namespace dtrain::comm::auth
