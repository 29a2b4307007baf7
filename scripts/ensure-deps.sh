#!/usr/bin/env bash
# Makes sure the system libraries and tools zerotrain builds and runs with are present.
# As root on Debian/Ubuntu it installs what is missing with apt; otherwise it prints exactly
# what to install (or `module load` on a cluster) and exits non-zero.
#
#   scripts/ensure-deps.sh [--python] [--slurm]
#     --python  also the Python packages of `make bench` and the interoperability tests
#               (numpy, h5py, PyTorch, transformers; scripts/python-env.sh says where),
#               and pip (tests/cuda_nvrtc_compile.rs fetches NVRTC's wheel with it)
#     --slurm   also Slurm and munge, for the single-node Slurm test (tests/slurm_job.rs,
#               scripts/slurm-cluster.sh); without root it only says what to install, and
#               that test skips.
set -euo pipefail

want_python=0
want_slurm=0
for arg in "$@"; do
  case $arg in
    --python) want_python=1 ;;
    --slurm) want_slurm=1 ;;
    *) echo "usage: $0 [--python] [--slurm]" >&2; exit 2 ;;
  esac
done

need_pkgs=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pc() { have_cmd pkg-config && pkg-config --exists "$1" 2>/dev/null; }

have_cmd pkg-config || need_pkgs+=(pkg-config)
{ have_cmd mpirun && have_cmd mpicc; } || need_pkgs+=(openmpi-bin libopenmpi-dev)
{ have_pc hdf5 || [ -e /usr/include/hdf5/serial/hdf5.h ] || [ -n "${HDF5_DIR:-}" ]; } || need_pkgs+=(libhdf5-dev)
{ ldconfig -p 2>/dev/null | grep -q 'libopenblas\.so ' || [ -n "${OPENBLAS_DIR:-}" ]; } || need_pkgs+=(libopenblas-dev)
{ ls /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf >/dev/null 2>&1 || [ -n "${ZEROTRAIN_FONT:-}" ]; } || need_pkgs+=(fonts-dejavu-core)
# libclang itself (what bindgen loads), not libclang-cpp, which llvm-*-dev brings without it.
{ ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || ls /usr/lib/*/libclang-[0-9]*.so* >/dev/null 2>&1 || [ -n "${LIBCLANG_PATH:-}" ]; } || need_pkgs+=(libclang-dev)

if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && have_cmd apt-get; then
    echo "ensure-deps: installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    echo "ensure-deps: missing system packages: ${need_pkgs[*]}" >&2
    echo "  on Debian/Ubuntu: sudo apt-get install ${need_pkgs[*]}" >&2
    echo "  on a cluster, load the modules instead, e.g.: module load openmpi hdf5 openblas llvm" >&2
    exit 1
  fi
fi

if ! have_cmd cargo; then
  echo "ensure-deps: cargo (Rust) is missing: install it from https://rustup.rs" >&2
  exit 1
fi

# Python packages for `make bench` (numpy GEMM reference) and the interoperability tests
# (h5py reading our files, Hugging Face transformers loading an exported model, GPT-2's
# tokenizer, PyTorch references): one directory of their own, installed with
# `python3 -m pip install --target` (which PEP 668 allows, unlike a system-wide install),
# outside the clone so a CI machine keeps it between runs (about 6 GB: PyTorch's wheel
# brings CUDA's libraries). Tests and scripts put it on PYTHONPATH (scripts/python-env.sh).
# Optional for `make run`: a test whose packages are missing skips with a message.
if [ "$want_python" = 1 ]; then
  if ! python3 -m pip --version >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && have_cmd apt-get; then
    echo "ensure-deps: installing pip for python3 (python3-pip)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3-pip >/dev/null ||
      echo "ensure-deps: could not install python3-pip; the Python tests will skip" >&2
  fi
  # shellcheck source=python-env.sh
  . "$(dirname "$0")/python-env.sh"
  if ! python3 -c "import $ZEROTRAIN_PYTHON_MODULES" >/dev/null 2>&1; then
    echo "ensure-deps: installing $ZEROTRAIN_PYTHON_PACKAGES into $ZEROTRAIN_PYTHON_DIR (pip --target)"
    mkdir -p "$ZEROTRAIN_PYTHON_DIR"
    # shellcheck disable=SC2086 # the package list is words
    python3 -m pip install -q --disable-pip-version-check --upgrade --target "$ZEROTRAIN_PYTHON_DIR" $ZEROTRAIN_PYTHON_PACKAGES ||
      echo "ensure-deps: could not install the Python packages; the tests that need them will skip" >&2
  fi
fi

# Slurm (Debian's slurm-wlm) and munge: the daemons scripts/slurm-cluster.sh starts for the
# Slurm job test. Optional: the test skips with a message without them.
if [ "$want_slurm" = 1 ]; then
  slurm_pkgs=(munge slurmctld slurmd slurm-client slurm-wlm-basic-plugins)
  missing_slurm=()
  for p in "${slurm_pkgs[@]}"; do
    if have_cmd dpkg-query; then
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing_slurm+=("$p")
    fi
  done
  if ! have_cmd dpkg-query; then
    for c in munged slurmctld slurmd sbatch; do
      have_cmd "$c" || [ -x "/usr/sbin/$c" ] || { missing_slurm=("${slurm_pkgs[@]}"); break; }
    done
  fi
  if [ ${#missing_slurm[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && have_cmd apt-get; then
      echo "ensure-deps: installing ${missing_slurm[*]}"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      # Package scripts may fail to start the services in a container; the test starts
      # its own daemons, so that is harmless.
      apt-get install -y -qq "${missing_slurm[@]}" >/dev/null ||
        echo "ensure-deps: could not install ${missing_slurm[*]}; the Slurm test will skip" >&2
    else
      echo "ensure-deps: Slurm test packages missing: ${missing_slurm[*]} (the Slurm test will skip)" >&2
      echo "  on Debian/Ubuntu: sudo apt-get install ${missing_slurm[*]}" >&2
    fi
  fi
fi
