"""Training: the Keras-semantics fit loop, batch steps, checkpoints, devices and interrupts.

    loop.py        fit / train_one_epoch / evaluate, per-epoch history as Keras logs it
    steps.py       how one batch's gradients are computed (`TrainingPlan`; stock autograd)
    checkpoint.py  everything a bit-identical resume needs, saved after every epoch
    interrupt.py   Ctrl-C stops at a batch boundary, with the position inside the epoch
    device.py      cpu / cuda, CPU threads
"""
