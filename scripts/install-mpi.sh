#!/bin/sh
# Install Open MPI from Debian 12 for the MPI build of clap-train (`make MPI=1`,
# `make check-mpi`). Not part of the main install: about 50 MB, 32 packages,
# and a single-machine build needs none of it. Run as root, or as a user with
# sudo. Safe to run twice.
#   libopenmpi-dev   headers and libmpi (pkg-config ompi-c)
#   openmpi-bin      mpirun
set -eu
SUDO=
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "install-mpi: need root or sudo" >&2; exit 2; fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends libopenmpi-dev openmpi-bin
pkg-config --exists ompi-c && command -v mpirun >/dev/null || { echo "install-mpi: Open MPI did not install" >&2; exit 2; }
echo "install-mpi: Open MPI $(pkg-config --modversion ompi-c) installed; build with: make MPI=1"
