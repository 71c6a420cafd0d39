#!/bin/sh
# Installs llama-cpp-python into a virtualenv, compiled for a portable CPU baseline, never for
# the build machine's CPU. The one place where llama.cpp's build flags live.
#
#   sh scripts/install-llama.sh VENV_PYTHON
#
# The compiled wheel is kept in a wheelhouse keyed by (version, flags, architecture), so a
# second clone on the same machine installs in seconds and a change of flags rebuilds; pip's own
# wheel cache is bypassed because it keys a built wheel by the sdist only.
#
#   RLAIF_LLAMA_NATIVE=1   build for this machine's CPU (-march=native); the key then also holds
#                          the CPU's feature flags, so the wheel is never reused on another CPU.
#   RLAIF_WHEELHOUSE=DIR   where built wheels are kept (default: ~/.cache/rlaif/wheels).
set -eu

PY=${1:?usage: install-llama.sh VENV_PYTHON}
VERSION=0.3.36
ARCH=$(uname -m)

# Only the libraries the bindings load (libllama and ggml): no multimodal (mtmd) library, no
# curl, and not llama.cpp's "common" utilities with the HTTP library they need, which
# llama-cpp-python's CMakeLists forces on but never loads; a project-include file run right
# after llama.cpp's project() call turns them off before llama.cpp reads the option.
COMMON="-DLLAVA_BUILD=OFF -DLLAMA_CURL=OFF -DGGML_CCACHE=OFF"
NO_COMMON='set(LLAMA_BUILD_COMMON OFF CACHE BOOL "llama: build common utils library" FORCE)'
case "$ARCH" in
  x86_64|amd64)
    # Every x86-64 of the last decade: AVX2 + FMA + F16C. No AVX-512, no AMX, no AVX-VNNI, no
    # BMI2: a VM may advertise and then trap them (seen: AMX on a Sapphire Rapids VM).
    PORTABLE="-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
-DGGML_F16C=ON -DGGML_BMI2=OFF -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF \
-DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF \
-DGGML_AMX_BF16=OFF" ;;
  aarch64|arm64)
    # ARMv8.0-A with NEON, which every 64-bit ARM core runs.
    PORTABLE="-DGGML_NATIVE=OFF -DGGML_CPU_ARM_ARCH=armv8-a" ;;
  *)
    PORTABLE="-DGGML_NATIVE=OFF" ;;
esac

if [ "${RLAIF_LLAMA_NATIVE:-0}" = "1" ]; then
  KIND=native
  FLAGS="$COMMON -DGGML_NATIVE=ON"
  CPU_ID=$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null || uname -a)
else
  KIND=portable
  FLAGS="$COMMON $PORTABLE"
  CPU_ID=""
fi

KEY=$(printf '%s|%s|%s|%s|%s' "$VERSION" "$ARCH" "$FLAGS" "$NO_COMMON" "$CPU_ID" | sha256sum | cut -c1-16)
HOUSE=${RLAIF_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/rlaif/wheels}
DIR="$HOUSE/llama-cpp-python-$VERSION-$ARCH-$KIND-$KEY"

if ! ls "$DIR"/*.whl >/dev/null 2>&1; then
  echo "rlaif: compiling llama.cpp ($KIND build for $ARCH, $(nproc) cores; once per machine)"
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/rlaif-llama-XXXXXX")
  START=$(date +%s)
  printf '%s\n' "$NO_COMMON" > "$TMP/no-common.cmake"
  CMAKE_ARGS="$FLAGS -DCMAKE_PROJECT_llama.cpp_INCLUDE=$TMP/no-common.cmake" \
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    "$PY" -m pip wheel --quiet --no-cache-dir --no-deps --no-binary llama-cpp-python \
      "llama-cpp-python==$VERSION" -w "$TMP"
  {
    echo "version=$VERSION"
    echo "arch=$ARCH"
    echo "kind=$KIND"
    echo "key=$KEY"
    echo "cmake_args=$FLAGS"
    echo "llama_build_common=OFF"
    echo "built_seconds=$(( $(date +%s) - START ))"
  } > "$TMP/build-flags.txt"
  rm -f "$TMP/no-common.cmake"
  mkdir -p "$HOUSE"
  rm -rf "$DIR.partial"
  mv "$TMP" "$DIR.partial"
  mv "$DIR.partial" "$DIR"   # a wheelhouse entry appears whole or not at all
  echo "rlaif: llama.cpp compiled in $(( $(date +%s) - START )) s, kept in $DIR"
else
  echo "rlaif: reusing the $KIND llama.cpp wheel in $DIR"
fi

"$PY" -m pip install --quiet --no-cache-dir --no-deps --force-reinstall "$DIR"/*.whl
# The record `rlaif doctor` and the tests read: which flags the installed library was built with.
cp "$DIR/build-flags.txt" "$("$PY" -c 'import sys; print(sys.prefix)')/llama-cpp-build.txt"
