"""What one LoRA dropout mask costs on this CPU, beside the ops of the adapter branch (bench/RESULTS.md, issue 3).

peft applies ``lora_dropout`` to the input of every adapted projection: 18 masks per step for Q+K+V on
MiniLM's 6 layers. Usage: python bench/dropout_cost.py  (an SST-2 batch: 32 rows x 14 tokens x 384, 1 thread)
"""

import time

import torch

torch.set_num_threads(1)
x, a = torch.randn(32, 14, 384), torch.randn(384, 8)
dropout = torch.nn.Dropout(0.1).train()
for name, op in [("dropout mask, p=0.1", lambda: dropout(x)), ("add", lambda: x + x), ("x @ A (384 x 8)", lambda: x @ a)]:
    for _ in range(20):  # burn-in
        op()
    t = time.perf_counter()
    for _ in range(200):
        op()
    print(f"{name}: {(time.perf_counter() - t) / 200 * 1e3:.3f} ms")
