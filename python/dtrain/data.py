"""dtrain.data: token sources, the data loader and the built-in additions.

    loader = dtrain.data.DataLoader([dtrain.data.MemoryTokens(tokens)], global_batch=16, seq_len=60,
                                    rank=comm.rank, world_size=comm.size)
    inputs, targets = loader.next()      # int32 [16 / world, 60]; reused by the next call
"""
from ._C.data import (  # noqa: F401
    AdditionDataset,
    AdditionScore,
    DataLoader,
    LoaderPosition,
    MemoryTokens,
    ShardFile,
    TokenSource,
    decode_bytes,
    encode_bytes,
    read_token_shard,
    tokenize_file_to_shards,
    write_token_shard,
)
