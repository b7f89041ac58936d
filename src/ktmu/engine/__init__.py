"""The unlearning engine: a request and its proxy forget set, the goal table, the one trainer loop and its parts.

``request`` / ``forget_set``: what to forget and the train images it is learnt from; ``goals``: what
each goal forgets and keeps (read by the engine and the evaluation alike); ``trainer``: the loop,
built from ``core`` (optimiser, grad scaler, masked backward, all-reduce; the relearning attack and
pretraining use it too), ``schedule``, ``reference`` (the original's outputs) and ``selection``
(which epoch is kept); ``config``: the trainer's settings; ``pretrain``: the embedded mini-CLIP's pretraining.
"""
