#!/usr/bin/env bash
# Installs the neural models voxhook runs on ONNX Runtime, and the runtime, from PyPI wheels
# into models/:
#   models/silero_vad.onnx               from silero-vad==6.2.3 (MIT), silero_vad/data/
#                                        (`[audio.silero]`: the second opinion on barge-ins
#                                        and utterances)
#   models/smart-turn-v3.2-cpu.onnx      from pipecat-ai==1.14.0 (BSD-2),
#                                        pipecat/audio/turn/smart_turn/data/
#                                        (`[audio.smart_turn]`: semantic end of turn)
#   models/libonnxruntime.so.1.32.0      from onnxruntime==1.32.0 (MIT), onnxruntime/capi/
# voxhook loads the library at run time (`ort` with load-dynamic), so nothing downloads at
# build time. Every file is pinned by sha256; a second run only checks them. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
model=models/silero_vad.onnx
turn=models/smart-turn-v3.2-cpu.onnx
library=models/libonnxruntime.so.1.32.0
model_sha=1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3
turn_sha=2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f
library_sha=6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f

ok() { [ -f "$1" ] && echo "$2  $1" | sha256sum --check --status; }
if ok "$model" "$model_sha" && ok "$turn" "$turn_sha" && ok "$library" "$library_sha"; then
  echo "onnx models ok"
  exit 0
fi
echo "setup: installing Silero VAD, smart-turn and ONNX Runtime into models/"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# --no-deps: the wheels' own requirements (torch, pipecat's) are not needed for the files.
python3 -m pip download -q --disable-pip-version-check --no-deps -d "$tmp" \
  "silero-vad==6.2.3" "pipecat-ai==1.14.0" "onnxruntime==1.32.0"
# One member out of each wheel (a zip); unzip is not on a fresh Debian, Python is.
python3 - "$tmp" <<'EOF'
import glob, shutil, sys, zipfile
tmp = sys.argv[1]
for pattern, member, out in [
    ("silero_vad-6.2.3-*.whl", "silero_vad/data/silero_vad.onnx", "models/silero_vad.onnx"),
    ("pipecat_ai-1.14.0-*.whl", "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
     "models/smart-turn-v3.2-cpu.onnx"),
    ("onnxruntime-1.32.0-*.whl", "onnxruntime/capi/libonnxruntime.so.1.32.0",
     "models/libonnxruntime.so.1.32.0"),
]:
    (wheel,) = glob.glob(f"{tmp}/{pattern}")
    with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out + ".part", "wb") as dst:
        shutil.copyfileobj(src, dst)
    shutil.move(out + ".part", out)
EOF
for pair in "$model:$model_sha" "$turn:$turn_sha" "$library:$library_sha"; do
  file=${pair%%:*}
  if ! ok "$file" "${pair##*:}"; then
    echo "setup: $file does not have the pinned sha256 ${pair##*:} (got $(sha256sum "$file" | cut -d' ' -f1))" >&2
    rm -f "$file"
    exit 1
  fi
done
echo "onnx models installed"
