# Sourced (by scripts/ensure-deps.sh, the bench scripts): where zerotrain's Python
# packages live and which they are. Tests read the same directory (tests/common, python()).
#   ZEROTRAIN_PYTHON_DIR   the packages' directory (default ~/.cache/zerotrain/python)
ZEROTRAIN_PYTHON_DIR=${ZEROTRAIN_PYTHON_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/zerotrain/python}
# pip names, and the modules that show they are installed.
ZEROTRAIN_PYTHON_PACKAGES="numpy h5py torch transformers safetensors scikit-learn"
ZEROTRAIN_PYTHON_MODULES="numpy, h5py, torch, transformers, safetensors, sklearn"
export ZEROTRAIN_PYTHON_DIR
export PYTHONPATH="$ZEROTRAIN_PYTHON_DIR${PYTHONPATH:+:$PYTHONPATH}"
