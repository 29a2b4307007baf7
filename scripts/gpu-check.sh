#!/usr/bin/env bash
# Runs the CUDA conformance suite (tests/cuda_conformance.rs) on a GPU machine that has
# the NVIDIA driver and CUDA 13 libraries (cuBLAS, NVRTC) but no Rust toolchain, MPI or
# HDF5.
#
#   On the build machine (x86-64, this repo's toolchain and libraries):
#     scripts/gpu-check.sh bundle
#       builds `cargo test --release --features cuda --no-run`, copies the test binary
#       (debug info stripped) to target/gpu-bundle/bin/ and every shared library `ldd`
#       resolves for it (libopenblas, libhdf5, libmpi, ... but not glibc itself) to
#       target/gpu-bundle/lib/.
#   Carry target/gpu-bundle to the GPU machine (the device tool: carry ["target/gpu-bundle"]),
#   then, there, from the repository root:
#     scripts/gpu-check.sh run
#       puts the bundled libraries and the CUDA 13 library folder on LD_LIBRARY_PATH and
#       runs the suite one test at a time; fails if any test skipped for want of a GPU.
#
# CUDA_LIB_DIR may name the folder holding libcublas.so.13 and libnvrtc.so.13 when it is
# not in a usual place (/usr/local/cuda*/lib64, the ldconfig cache, pip's nvidia/*/lib).
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=target/gpu-bundle

bundle() {
    local exe
    exe=$(cargo test --release --features cuda --test cuda_conformance --no-run \
        --message-format=json 2>/dev/null |
        jq -r 'select(.reason == "compiler-artifact" and .target.name == "cuda_conformance"
                      and .executable != null) | .executable' | tail -n 1)
    [ -x "$exe" ] || { echo "gpu-check: no cuda_conformance test binary built" >&2; exit 1; }
    rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/bin" "$BUNDLE/lib"
    cp "$exe" "$BUNDLE/bin/cuda_conformance"
    strip --strip-debug "$BUNDLE/bin/cuda_conformance"
    # every resolved library except glibc's own (the GPU machine has a compatible one)
    ldd "$exe" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' |
        grep -Ev '/(libc|libm|libdl|libpthread|librt|ld-linux-x86-64)\.so' |
        while read -r lib; do cp -L "$lib" "$BUNDLE/lib/"; done
    echo "gpu-check: bundled $(ls "$BUNDLE/lib" | wc -l) libraries:"
    ls "$BUNDLE/lib" | sed 's/^/  /'
    du -sh "$BUNDLE"
    echo "gpu-check: on the GPU machine run: scripts/gpu-check.sh run"
}

# The folder holding libcublas.so.13 (and libnvrtc.so.13), or nothing.
cuda_lib_dir() {
    if [ -n "${CUDA_LIB_DIR:-}" ]; then echo "$CUDA_LIB_DIR"; return; fi
    local d
    for d in /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
        [ -e "$d/libcublas.so.13" ] && { echo "$d"; return; }
    done
    d=$(ldconfig -p 2>/dev/null | awk '/libcublas\.so\.13 / { print $NF; exit }')
    [ -n "$d" ] && { dirname "$d"; return; }
    d=$(find / -xdev -name 'libcublas.so.13' 2>/dev/null | head -n 1 || true)
    if [ -n "$d" ]; then dirname "$d"; fi
}

run() {
    [ -x "$BUNDLE/bin/cuda_conformance" ] || { echo "gpu-check: run '$0 bundle' first" >&2; exit 1; }
    local cuda nvrtc
    cuda=$(cuda_lib_dir)
    [ -n "$cuda" ] || echo "gpu-check: warning: libcublas.so.13 not found; set CUDA_LIB_DIR" >&2
    # pip wheels keep NVRTC in its own folder beside cuBLAS's
    nvrtc=$(find / -xdev -name 'libnvrtc.so.13' 2>/dev/null | head -n 1 || true)
    export LD_LIBRARY_PATH="$PWD/$BUNDLE/lib:${cuda}:${nvrtc:+$(dirname "$nvrtc")}:${LD_LIBRARY_PATH:-}"
    echo "gpu-check: LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    local log=target/gpu-check.log
    set +e
    RUST_BACKTRACE=1 "$BUNDLE/bin/cuda_conformance" --test-threads=1 --nocapture 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    set -e
    if grep -q "skipped: no" "$log"; then
        echo "gpu-check: FAILED: tests skipped for want of CUDA (see above)" >&2
        exit 1
    fi
    exit "$rc"
}

case "${1:-}" in
    bundle) bundle ;;
    run) run ;;
    *) echo "usage: $0 bundle|run" >&2; exit 2 ;;
esac
