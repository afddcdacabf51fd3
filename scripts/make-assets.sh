#!/usr/bin/env bash
# Regenerates the audio assets voxhook ships, idempotently (sox runs in repeatable mode, so
# the same tools give the same bytes): the "please hold" filler chime and the fallback prompt.
# Needs sox and flite (scripts/setup.sh installs both). Output: 8 kHz mono 16-bit PCM WAV.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in sox flite; do
  command -v "$tool" >/dev/null || { echo "make-assets: $tool not found; run scripts/setup.sh" >&2; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p assets
fmt=(-r 8000 -c 1 -b 16 -e signed-integer)

# Filler: two soft plucked notes (a rising fourth, E5 then A5) with a slow decay, then silence
# so the loop breathes; about 2.6 s in all, peak normalised to -20 dBFS.
sox -R -n "${fmt[@]}" "$tmp/n1.wav" synth 0.9 pluck E5 fade q 0.005 0.9 0.85
sox -R -n "${fmt[@]}" "$tmp/n2.wav" synth 1.1 pluck A5 fade q 0.005 1.1 1.05
sox -R -n "${fmt[@]}" "$tmp/rest.wav" trim 0 0.6
sox -R "$tmp/n1.wav" "$tmp/n2.wav" "$tmp/rest.wav" "${fmt[@]}" "$tmp/filler.wav" \
  lowpass 2500 gain -n -20
mv "$tmp/filler.wav" assets/filler.wav

# Fallback prompt: flite's slt voice, resampled to 8 kHz and normalised to -3 dBFS.
flite -voice slt \
  -t "Sorry, I am having trouble answering right now. Please try again in a moment." \
  -o "$tmp/fallback-raw.wav"
sox -R "$tmp/fallback-raw.wav" "${fmt[@]}" "$tmp/fallback.wav" gain -n -3
mv "$tmp/fallback.wav" assets/fallback.wav

for f in assets/filler.wav assets/fallback.wav; do
  echo "make-assets: $f $(soxi -d "$f") $(soxi -r "$f") Hz $(soxi -b "$f")-bit"
done
