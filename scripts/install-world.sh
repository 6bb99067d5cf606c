#!/bin/sh
# Install the Debian 12 packages whose recordings the sound world is built from
# (scripts/world.py; `make world`). Not part of the main install: about 270 MB
# to download. Run as root, or as a user with sudo. Safe to run twice.
#   sound-theme-freedesktop  desktop event sounds (bells, phones, alarms, camera shutter)
#   espeak-ng                speech synthesis (male and female voices, several languages)
#   wesnoth-1.16-data        the game's recorded sound effects (animals, fire, weapons, voices)
#   fluid-soundfont-gm       recorded General MIDI instruments and effects, rendered by
#   fluidsynth               fluidsynth to WAV
# The small world (`make world-small`) needs only the first two, which
# scripts/install-deps.sh installs for the tests.
set -eu
SUDO=
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "install-world: need root or sudo" >&2; exit 2; fi
fi
export DEBIAN_FRONTEND=noninteractive
WORLD="sound-theme-freedesktop espeak-ng wesnoth-1.16-data fluid-soundfont-gm fluidsynth
       python3 python3-numpy python3-scipy python3-soundfile"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $WORLD
