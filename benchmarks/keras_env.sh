#!/usr/bin/env bash
# Make benchmarks/.venv-keras: Keras 3 on TensorFlow CPU, the reference that
# benchmarks/keras_reference.py runs under. It is a virtualenv of its own so that TensorFlow never
# shares a process (or its thread pools and pinned packages) with mnistlab's PyTorch.
# Idempotent: an existing venv that already imports the pinned TensorFlow is left alone.
# Prints the venv's python path on its last line.
set -euo pipefail

TF_VERSION=2.21.0
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv-keras"
PY="$VENV/bin/python"

ready() {
    [ -x "$PY" ] && "$PY" - "$TF_VERSION" >/dev/null 2>&1 <<'EOF'
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras, numpy, tensorflow
sys.exit(tensorflow.__version__ != sys.argv[1] or not keras.__version__.startswith("3."))
EOF
}

# One install at a time into this folder (a second concurrent pip would corrupt it).
exec 9>"/tmp/mnistlab-venv-keras.lock"
flock 9

if ! ready; then
    [ -x "$PY" ] || python3 -m venv "$VENV"
    "$PY" -m pip install --quiet "tensorflow-cpu==$TF_VERSION" numpy >&2
    ready || { echo "keras_env.sh: $VENV does not import tensorflow $TF_VERSION + keras 3" >&2; exit 1; }
fi

"$PY" -c 'import os; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras, tensorflow; print(f"keras {keras.__version__}, tensorflow {tensorflow.__version__}")' >&2
echo "$PY"
