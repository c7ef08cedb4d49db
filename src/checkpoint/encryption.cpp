// Chunked XChaCha20-Poly1305 for checkpoint files and the key handling
// (EncryptionKey). See encryption.h for the format.
#include "checkpoint/encryption.h"

#include <sodium.h>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "dtrain/error.h"

namespace dtrain::checkpoint {

namespace {
constexpr char kMagic[8] = {'D', 'T', 'R', 'C', 'K', 'E', 'N', 'C'};
constexpr uint32_t kVersion = 1;

void init_sodium() {
  static const int ok = sodium_init();
  DTRAIN_CHECK(ok >= 0, "libsodium failed to initialise");
}

void put_u32(unsigned char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
uint32_t get_u32(const unsigned char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
void put_u64(unsigned char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

void key_id(const EncryptionKey& key, unsigned char out[16]) {
  static const char label[] = "dtrain checkpoint key id v1";
  crypto_generichash(out, 16, reinterpret_cast<const unsigned char*>(label), sizeof(label) - 1, key.data(),
                     EncryptionKey::kBytes);
}

// nonce and associated data of chunk `index`.
void chunk_params(const enc::FileHeader& h, uint64_t index, bool last, unsigned char nonce[24],
                  unsigned char ad[enc::kHeaderBytes + 9]) {
  std::memcpy(nonce, h.raw + 32, 16);
  put_u64(nonce + 16, index);
  std::memcpy(ad, h.raw, enc::kHeaderBytes);
  put_u64(ad + enc::kHeaderBytes, index);
  ad[enc::kHeaderBytes + 8] = last ? 1 : 0;
}
}  // namespace

EncryptionKey::EncryptionKey(const unsigned char* bytes) {
  std::memcpy(bytes_, bytes, kBytes);
}

EncryptionKey::~EncryptionKey() {
  sodium_memzero(bytes_, kBytes);
}

std::shared_ptr<const EncryptionKey> EncryptionKey::from_hex(const std::string& text, const std::string& where) {
  init_sodium();
  size_t a = 0, b = text.size();
  while (a < b && std::isspace(static_cast<unsigned char>(text[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(text[b - 1]))) --b;
  unsigned char bytes[kBytes];
  size_t n = 0;
  const bool ok = b - a == 2 * kBytes &&
                  sodium_hex2bin(bytes, kBytes, text.data() + a, b - a, nullptr, &n, nullptr) == 0 && n == kBytes;
  DTRAIN_CHECK(ok, "the checkpoint key from ", where,
               " is not 64 hex digits (256 bits); make one with `dtrain-ckpt keygen`");
  auto key = std::make_shared<const EncryptionKey>(bytes);
  sodium_memzero(bytes, sizeof(bytes));
  return key;
}

std::shared_ptr<const EncryptionKey> EncryptionKey::from_file_or_env(const std::string& key_file) {
  if (!key_file.empty()) {
    std::ifstream in(key_file, std::ios::binary);
    DTRAIN_CHECK(in.good(), "cannot read the checkpoint key file ", key_file);
    std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (content.size() == kBytes) {
      auto key = std::make_shared<const EncryptionKey>(reinterpret_cast<const unsigned char*>(content.data()));
      sodium_memzero(content.data(), content.size());
      return key;
    }
    auto key = from_hex(content, "key file " + key_file);
    sodium_memzero(content.data(), content.size());
    return key;
  }
  const char* env = std::getenv("DTRAIN_CHECKPOINT_KEY");
  if (env != nullptr && *env != '\0') return from_hex(env, "DTRAIN_CHECKPOINT_KEY");
  return nullptr;
}

std::string EncryptionKey::generate_hex() {
  init_sodium();
  unsigned char bytes[kBytes];
  randombytes_buf(bytes, kBytes);
  char hex[2 * kBytes + 1];
  sodium_bin2hex(hex, sizeof(hex), bytes, kBytes);
  sodium_memzero(bytes, sizeof(bytes));
  return hex;
}

namespace enc {

bool has_magic(const unsigned char* p, size_t n) {
  return n >= sizeof(kMagic) && std::memcmp(p, kMagic, sizeof(kMagic)) == 0;
}

FileHeader new_header(const EncryptionKey& key, uint32_t chunk) {
  init_sodium();
  FileHeader h;
  h.chunk = chunk;
  std::memcpy(h.raw, kMagic, 8);
  put_u32(h.raw + 8, kVersion);
  put_u32(h.raw + 12, chunk);
  key_id(key, h.raw + 16);
  randombytes_buf(h.raw + 32, 16);
  return h;
}

FileHeader parse_header(const unsigned char* raw, const EncryptionKey& key, const std::string& path) {
  init_sodium();
  FileHeader h;
  std::memcpy(h.raw, raw, kHeaderBytes);
  DTRAIN_CHECK(has_magic(raw, kHeaderBytes), "checkpoint file ", path, " is not encrypted, but a key was given");
  DTRAIN_CHECK(get_u32(raw + 8) == kVersion, "checkpoint file ", path, " uses encryption format version ",
               get_u32(raw + 8), "; this dtrain reads version ", kVersion);
  h.chunk = get_u32(raw + 12);
  DTRAIN_CHECK(h.chunk >= 64 && h.chunk <= (64u << 20), "checkpoint file ", path,
               " has a damaged encryption header (chunk size ", h.chunk, ")");
  unsigned char id[16];
  key_id(key, id);
  DTRAIN_CHECK(sodium_memcmp(id, raw + 16, 16) == 0, "checkpoint file ", path,
               " was encrypted with a different key: wrong key (check --checkpoint-key-file / DTRAIN_CHECKPOINT_KEY)");
  return h;
}

void seal(const EncryptionKey& key, const FileHeader& h, uint64_t index, bool last, const unsigned char* in, size_t n,
          unsigned char* out) {
  unsigned char nonce[24], ad[kHeaderBytes + 9];
  chunk_params(h, index, last, nonce, ad);
  unsigned long long clen = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(out, &clen, in, n, ad, sizeof(ad), nullptr, nonce, key.data());
}

void open(const EncryptionKey& key, const FileHeader& h, uint64_t index, bool last, const unsigned char* in,
          size_t n_sealed, unsigned char* out, const std::string& path) {
  unsigned char nonce[24], ad[kHeaderBytes + 9];
  chunk_params(h, index, last, nonce, ad);
  unsigned long long mlen = 0;
  const int rc =
      crypto_aead_xchacha20poly1305_ietf_decrypt(out, &mlen, nullptr, in, n_sealed, ad, sizeof(ad), nonce, key.data());
  DTRAIN_CHECK(rc == 0, "checkpoint file ", path, " fails authentication at chunk ", index,
               ": it was modified, corrupted or truncated after it was written (the key is right); "
               "restore it or use another checkpoint");
}

}  // namespace enc
}  // namespace dtrain::checkpoint
