"""What a model sees: raw pixels in [0, 1] or HOG features (exact scikit-image semantics),
cached on disk by content.

    extract.py  `extract_features`: raw or HOG, with the feature cache
    hog.py      scikit-image's HOG for a whole batch, vectorised
"""
