// Internal: which local address Gloo's pairs listen on and connect from.
//
// DTRAIN_IFACE (dtrain-run --iface) pins them to one network interface, as it
// pins NCCL's sockets (NCCL_SOCKET_IFNAME); otherwise the rank's Gloo address
// (DTRAIN_GLOO_ADDR, or the local address that routes to the store host) is
// used. Gloo never binds to every interface.
#pragma once

#include <gloo/transport/tcp/attr.h>
#include <ifaddrs.h>
#include <sys/socket.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "dtrain/comm/init.h"
#include "dtrain/error.h"

namespace dtrain::comm {

inline gloo::transport::tcp::attr gloo_device_attr(const std::string& address) {
  gloo::transport::tcp::attr attr;
  const char* iface = std::getenv(env::kIface);
  if (iface == nullptr || *iface == '\0') {
    attr.hostname = address;
    return attr;
  }
  // Gloo aborts the lookup with a bare message when the interface has no
  // IPv4 address; check first and say what to do.
  bool found = false;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) == 0) {
    for (ifaddrs* a = list; a != nullptr && !found; a = a->ifa_next)
      found = a->ifa_addr != nullptr && a->ifa_addr->sa_family == AF_INET && std::strcmp(a->ifa_name, iface) == 0;
    ::freeifaddrs(list);
  }
  DTRAIN_CHECK(found, env::kIface, "=", iface,
               " names no network interface with an IPv4 address on this host; list them with `ip -4 addr` "
               "and pass the one of the job's private network (dtrain-run --iface NAME)");
  attr.iface = iface;
  attr.ai_family = AF_INET;
  return attr;
}

}  // namespace dtrain::comm
