"""Networks: stock PyTorch modules built from the config, summaries, and the Keras optimiser.

    modules.py  the three modules with Keras semantics PyTorch lacks (dropout, image in, flatten)
    build.py    config -> `nn.Sequential` of stock modules, Keras initialisation
    summary.py  per-layer shapes, weights, biases, multiply-adds (no torch needed)
    optim.py    RMSprop, Adam, AdamW, Nadam, SGD with Keras's argument names and update formulas

Nothing here is about speed: `mnistlab.fast` rewrites a built model for the CPU.
"""
