// Internal: membership proof over every Gloo pair, before any collective.
//
// In the installed Gloo a pair's listening socket accepts whoever connects
// first, with no check. So once the full mesh is connected, each pair runs a
// challenge-response over the pair itself: both ends send a fresh nonce, then
// a MAC over (both ranks, both nonces) keyed by a pair key that only members
// can know. The pair key is derived from 32 random bytes that the
// communicator's rank 0 publishes through the store, which serves only peers
// holding the job token and carries them encrypted; so a proof shows the
// peer holds the job token too. A pair that does not prove itself within the
// timeout (or while the job fails) ends the job with an error naming its rank
// and the address actually connected. Gloo's payload bytes stay unencrypted.
#pragma once

#include <chrono>
#include <memory>

#include "dtrain/comm/store.h"

namespace gloo {
class Context;
}

namespace dtrain::comm {

// `store` is the communicator's Gloo rendezvous prefix (the pair secret lives
// under it); its root store holds the job's poison key, which is watched so
// that a job failing elsewhere ends the wait at once. Throws dtrain::Error.
void authenticate_gloo_pairs(gloo::Context& context, std::shared_ptr<Store> store, int rank, int size,
                             std::chrono::milliseconds timeout);

}  // namespace dtrain::comm
