"""One short training run, shared by the data-parallel worker and the
single-process reference in test_multirank.py: the tiny GPT (one block) on
the built-in additions, SGD, a fixed global batch."""
import numpy as np

import dtrain

GLOBAL_BATCH = 8
SEQ_LEN = 30
STEPS = 4
LR = 0.05


def setup(rank=0, world_size=1):
    model = dtrain.nn.gpt("tiny", n_layer=1, seed=21)
    tokens = np.array(dtrain.data.AdditionDataset(2).train_tokens(500, 4), np.uint16)
    loader = dtrain.data.DataLoader([dtrain.data.MemoryTokens(tokens)], GLOBAL_BATCH, SEQ_LEN, rank=rank,
                                    world_size=world_size)
    return model, loader


def train_single_process():
    """The reference: no engine, the whole global batch in one process."""
    model, loader = setup()
    opt = dtrain.optim.SGD(model, momentum=0.9)
    losses = []
    for _ in range(STEPS):
        x, y = loader.next()
        model.zero_grad()
        losses.append(model(x, y))
        model.backward()
        opt.step(LR)
    return losses, {name: p.value.numpy().copy() for name, p in model.named_parameters()}
