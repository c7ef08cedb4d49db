// Token shard format: round trip, and refusal of truncated or foreign files.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "data_test_util.h"
#include "dtrain/data/byte_tokenizer.h"
#include "dtrain/data/token_shard.h"

using namespace dtrain;

TEST_CASE("token shards round-trip in llm.c's layout", "[data][shard]") {
  TempDir dir;
  const std::vector<uint16_t> tokens = {1, 2, 3, 50256, 0, 65535};
  const std::string path = dir.file("a.bin");
  data::write_token_shard(path, tokens);
  CHECK(std::filesystem::file_size(path) == 1024 + 2 * tokens.size());
  std::ifstream in(path, std::ios::binary);
  int32_t header[256];
  in.read(reinterpret_cast<char*>(header), sizeof(header));
  CHECK(header[0] == 20240520);
  CHECK(header[1] == 1);
  CHECK(header[2] == 6);
  CHECK(data::read_token_shard(path) == tokens);
  CHECK(data::read_shard_header(path) == 6);
  data::ShardFile f(path);
  uint16_t window[2];
  f.read(3, 2, window);
  CHECK(window[0] == 50256);
  CHECK(window[1] == 0);
  CHECK_THROWS_WITH(f.read(5, 2, window), Catch::Contains("past its 6 tokens"));
  // No temporary file is left next to it.
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path)) files += e.is_regular_file();
  CHECK(files == 1);
}

TEST_CASE("truncated, foreign and missing shards are refused with clear messages", "[data][shard]") {
  TempDir dir;
  const std::string good = dir.file("good.bin");
  data::write_token_shard(good, std::vector<uint16_t>(100, 7));

  const std::string truncated = dir.file("truncated.bin");
  std::filesystem::copy_file(good, truncated);
  std::filesystem::resize_file(truncated, 1024 + 150);
  CHECK_THROWS_WITH(data::ShardFile(truncated), Catch::Contains("truncated.bin") &&
                                                    Catch::Contains("declares 100 tokens") &&
                                                    Catch::Contains("it is truncated"));
  const std::string tiny = dir.file("tiny.bin");
  std::filesystem::copy_file(good, tiny);
  std::filesystem::resize_file(tiny, 10);
  CHECK_THROWS_WITH(data::ShardFile(tiny), Catch::Contains("shorter than the 1024-byte header"));

  const std::string foreign = dir.file("foreign.txt");
  {
    std::ofstream out(foreign);
    for (int i = 0; i < 200; ++i) out << "just some text, not a token shard\n";
  }
  CHECK_THROWS_WITH(data::ShardFile(foreign), Catch::Contains("is not a token shard") && Catch::Contains("20240520"));

  const std::string v2 = dir.file("v2.bin");
  std::filesystem::copy_file(good, v2);
  {
    std::fstream f(v2, std::ios::in | std::ios::out | std::ios::binary);
    const int32_t version = 2;
    f.seekp(4);
    f.write(reinterpret_cast<const char*>(&version), 4);
  }
  CHECK_THROWS_WITH(data::ShardFile(v2), Catch::Contains("has version 2"));
  CHECK_THROWS_WITH(data::ShardFile(dir.file("missing.bin")), Catch::Contains("cannot open token shard"));
  CHECK_THROWS_WITH(data::glob_paths(dir.file("none_*.bin")), Catch::Contains("no files match"));
}

TEST_CASE("byte tokenizer: round trip and text to shards", "[data][tokenizer]") {
  const std::string text = "hello, dtrain\n\xff\x01";
  const auto tokens = data::encode_bytes_i32(text);
  CHECK(tokens.size() == text.size());
  CHECK(tokens[14] == 255);
  CHECK(data::decode_bytes(tokens) == text);
  CHECK(data::decode_bytes({72, 300, -1}) == "H??");

  TempDir dir;
  const std::string src = dir.file("in.txt");
  std::string big;
  for (int i = 0; i < 250; ++i) big += static_cast<char>('a' + i % 26);
  { std::ofstream(src) << big; }
  const auto paths = data::tokenize_file_to_shards(src, dir.file("out"), 100);
  REQUIRE(paths.size() == 3);
  CHECK(paths[0] == dir.file("out_000000.bin"));
  std::vector<uint16_t> all;
  for (auto& p : paths) {
    auto t = data::read_token_shard(p);
    all.insert(all.end(), t.begin(), t.end());
  }
  CHECK(all == data::encode_bytes(big));
  const std::string empty = dir.file("empty.txt");
  std::ofstream(empty).flush();
  CHECK_THROWS_WITH(data::tokenize_file_to_shards(empty, dir.file("e"), 100), Catch::Contains("is empty"));
  CHECK_THROWS_WITH(data::read_text_file(dir.file("nope.txt")), Catch::Contains("cannot open text file"));
}
