"""Datasets: the registry (names, files, checksums), the strict IDX reader, lookup in the places
users keep data, verified download, decoded-array caches and train/validation/test splits.

    registry.py  what each dataset is: IDX file names, SHA-256 of their content, class names
    idx.py       IDX files read strictly (every header field checked before allocating)
    load.py      lookup order, verification, `load_dataset`, `make_splits`, `dataset_status`
    cache.py     decoded arrays cached as .npy, verified by content before use
    download.py  verified download from mirrors into the cache
"""
