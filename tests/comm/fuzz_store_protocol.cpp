// libFuzzer target for the TCP store's message parser: any byte string must
// either parse or raise ProtocolError (never crash, never over-read), and a
// parsed message must re-encode to a frame that parses to the same message.
#include <cstdlib>
#include <cstring>

#include "comm/store_protocol.h"

using namespace dtrain::comm::protocol;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size >= 4) {
    try {
      (void)parse_length(data);
    } catch (const ProtocolError&) {
    }
  }
  try {
    const Message m = parse_body(data, size);
    const std::string frame = encode(m);
    const auto* p = reinterpret_cast<const uint8_t*>(frame.data());
    if (parse_length(p) != frame.size() - 4) std::abort();
    const Message again = parse_body(p + 4, frame.size() - 4);
    if (encode(again) != frame) std::abort();
  } catch (const ProtocolError&) {
  }
  return 0;
}
