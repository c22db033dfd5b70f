"""Real images -> MNIST-style 28x28 input -> classes, with a trained run's own model and
features.

    imageload.py  decoding image files safely
    imageprep.py  grey levels, polarity, ink, crop, MNIST framing
    predictor.py  a run's model on prepared frames; CSV and frames out
    explain.py    per-file pictures of the preparation (`predict --explain`)
"""
