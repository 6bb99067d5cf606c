#!/bin/sh
# Install every Debian 12 package wsac needs to build, run and test.
# Run as root, or as a user with sudo. Safe to run twice.
set -eu
SUDO=
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "install-deps: need root or sudo" >&2; exit 2; fi
fi
export DEBIAN_FRONTEND=noninteractive
# build: compiler, pkg-config and the libraries the filters link
BUILD="build-essential pkg-config libsndfile1-dev libfftw3-dev libopenblas-dev
       libmsgpack-dev libsoxr-dev libutf8proc-dev libjansson-dev libcsv-dev"
# tests and benchmarks: Debian's Python with the PyTorch reference, GNU time,
# groff to check the man pages, GNU parallel for the sharding tests, clang
# with libFuzzer for the fuzz harnesses, scikit-learn as the t-SNE reference,
# python3-regex (\p{L}) for the byte-level BPE reference
TEST="python3 python3-numpy python3-msgpack python3-torch python3-torchaudio python3-regex
      python3-soundfile time groff-base parallel clang-14 libfuzzer-14-dev libclang-rt-14-dev
      python3-sklearn python3-scipy sound-theme-freedesktop espeak-ng"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $BUILD $TEST
