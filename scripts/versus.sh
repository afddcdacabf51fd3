#!/usr/bin/env bash
# Capacity side by side with pipecat (issue 14; README "Performance" -> "Side by side with
# pipecat"): the same load generator (benches/load.rs) drives voxhook (the daemon it starts,
# fake STT/TTS) and a minimal pipecat bot (benches/versus/bot.py, the same fakes, the same
# Kore simulator), each with the VAD it ships and with the VAD off, stepping N up.
#
#   scripts/versus.sh            # the full run (~15 min on 2 cores)
#   scripts/versus.sh --smoke    # ~50 s: 4 calls on each system, VAD on, 10 s holds; fails
#                                # unless every call held and replies were heard
#
# Environment: VERSUS_VOXHOOK_CALLS, VERSUS_PIPECAT_CALLS (comma-separated N steps),
# VERSUS_DURATION (hold seconds), VERSUS_ONLY ("voxhook" or "pipecat"), VERSUS_VAD ("on",
# "off" or "on off"). The report is target/versus-report.md (one file per row set in
# target/versus/, with the full notes of each in *.out). Not part of scripts/test.sh or .ci/run: it takes minutes and needs PyPI
# for the first install.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
venv=target/versus-venv
smoke=false
[[ "${1:-}" == "--smoke" ]] && smoke=true

# pipecat-ai 1.14.0 with its FastAPI WebSocket transport and Silero (onnxruntime), every
# package pinned (benches/versus/requirements.txt). Reinstalled only when the pins change.
stamp="$venv/.requirements.sha256"
want="$(sha256sum benches/versus/requirements.txt | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r benches/versus/requirements.txt
    echo "$want" >"$stamp"
fi
"$venv/bin/python" -c "import pipecat.serializers.twilio, pipecat.audio.vad.silero, pipecat.transports.websocket.fastapi"

cargo bench --bench load --no-run --quiet
mkdir -p target/versus
rm -f target/versus/*.md target/versus/*.out

bot="$venv/bin/python benches/versus/bot.py"
# N steps per system and VAD: around each one's ceiling on 2 cores (one pipecat process
# saturates its core at ~40 calls with Silero, ~100 without; voxhook's generator and daemon
# share both cores).
if $smoke; then
    vox_on=4 vox_off=4 pc_on=4 pc_off=4 duration=10 vads=on
else
    vox_on="${VERSUS_VOXHOOK_CALLS:-100,200,300,400,500}"
    vox_off="${VERSUS_VOXHOOK_CALLS:-200,400,600,800}"
    pc_on="${VERSUS_PIPECAT_CALLS:-10,20,30,40}"
    pc_off="${VERSUS_PIPECAT_CALLS:-40,60,80,100}"
    duration="${VERSUS_DURATION:-20}"
    vads="${VERSUS_VAD:-on off}"
fi
only="${VERSUS_ONLY:-}"

for vad in $vads; do
    if [[ $vad == on ]]; then vox_calls=$vox_on pc_calls=$pc_on; else vox_calls=$vox_off pc_calls=$pc_off; fi
    if [[ -z "$only" || "$only" == voxhook ]]; then
        echo "versus: voxhook, VAD $vad, N = $vox_calls ($(uptime | sed 's/.*load/load/'))" >&2
        cargo bench --bench load --quiet -- --vad "$vad" --calls "$vox_calls" \
            --duration-secs "$duration" --label voxhook >"target/versus/voxhook-vad-$vad.out"
    fi
    if [[ -z "$only" || "$only" == pipecat ]]; then
        echo "versus: pipecat, VAD $vad, N = $pc_calls ($(uptime | sed 's/.*load/load/'))" >&2
        cargo bench --bench load --quiet -- --vad "$vad" --calls "$pc_calls" \
            --duration-secs "$duration" --external "$bot" --label pipecat >"target/versus/pipecat-vad-$vad.out"
    fi
done

{
    echo "# Side by side with pipecat ($(date -u +%Y-%m-%d), $(nproc) cores)"
    echo
    for f in target/versus/*.md; do cat "$f"; echo; done
} >target/versus-report.md
cat target/versus-report.md

if $smoke; then
    # Every row: all calls held, and a reply latency measured at the callers.
    awk -F'|' '$2 ~ /voxhook|pipecat/ {
        rows++; gsub(/ /, "", $4); gsub(/ /, "", $5);
        if ($4 != $5 || $11 ~ /–/) { bad++; print "versus smoke: bad row:" $0 > "/dev/stderr" } }
        END { if (rows < 2 || bad) exit 1; print "versus smoke: ok (" rows " rows)" }' \
        target/versus-report.md
fi
