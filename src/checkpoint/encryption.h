// Encryption at rest for checkpoint files: XChaCha20-Poly1305 (libsodium's
// IETF AEAD) over fixed-size chunks, so a rank can decrypt just the chunks
// covering the byte ranges it needs while memory stays bounded by one chunk.
//
//   file   = header | chunk 0 | chunk 1 | ... | chunk n-1
//   header = "DTRCKENC" | u32 version | u32 chunk size | 16-byte key id | 16-byte random nonce prefix
//   chunk i = AEAD(plaintext bytes [i*C, (i+1)*C), nonce = prefix | u64 i,
//                  associated data = header | u64 i | u8 (i == n-1))
//
// Binding the index and the "last" flag makes reordering, dropping or
// truncating chunks fail authentication like a flipped byte does. The key id
// (a keyed BLAKE2b of a constant) tells a wrong key apart from tampering.
// This is equivalent to libsodium's secretstream (same cipher, per-chunk tags,
// a final tag) but allows random access, which resharded loads need.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "dtrain/checkpoint.h"

namespace dtrain::checkpoint::enc {

constexpr size_t kHeaderBytes = 48;
constexpr size_t kTagBytes = 16;
constexpr uint32_t kDefaultChunk = 1u << 20;

struct FileHeader {
  uint32_t chunk = kDefaultChunk;
  unsigned char raw[kHeaderBytes] = {};
};

bool has_magic(const unsigned char* p, size_t n);
// A header for a new file (fresh random nonce prefix).
FileHeader new_header(const EncryptionKey& key, uint32_t chunk = kDefaultChunk);
// Checks magic, version and the key id; throws naming `path` ("wrong key").
FileHeader parse_header(const unsigned char* raw, const EncryptionKey& key, const std::string& path);

// out must hold n + kTagBytes bytes.
void seal(const EncryptionKey& key, const FileHeader& h, uint64_t index, bool last, const unsigned char* in, size_t n,
          unsigned char* out);
// in holds n_sealed >= kTagBytes bytes; out n_sealed - kTagBytes. Throws naming `path`.
void open(const EncryptionKey& key, const FileHeader& h, uint64_t index, bool last, const unsigned char* in,
          size_t n_sealed, unsigned char* out, const std::string& path);

}  // namespace dtrain::checkpoint::enc
