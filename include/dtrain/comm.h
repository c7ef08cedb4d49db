// dtrain collective communication: one include for the whole layer.
//   comm/store.h         Store, TcpStore (authenticated), FileStore, PrefixStore
//   comm/work.h          Work: async handle (wait, is_completed)
//   comm/communicator.h  Communicator: all_reduce, reduce_scatter, all_gather, broadcast,
//                        send/recv, all_to_all, barrier, split
//   comm/init.h          init_process_group from torchrun / Slurm / Open MPI environments
#pragma once

#include "dtrain/comm/communicator.h"
#include "dtrain/comm/init.h"
#include "dtrain/comm/store.h"
#include "dtrain/comm/work.h"
