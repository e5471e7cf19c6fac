"""Pretraining of the ESI model: data pipeline, engines (plain CPU/DDP or DeepSpeed ZeRO), loop, checkpoints.

Heavy (torch, optionally deepspeed): imported only inside `esi pretrain`.
"""
