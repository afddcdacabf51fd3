#!/usr/bin/env python3
"""Writes the fuzz corpus seeds: fuzz/corpus/<target>/ from tests/fixtures/ and fuzz/seeds/.

A WebSocket target reads one connection per input: frames separated by 0xFF, a binary frame
marked by a leading 0x00 (fuzz/src/lib.rs). Each provider gets every inbound fixture alone,
its start message followed by each other one, and one whole conversation (start, media,
binary audio where the protocol has it, digits, marks, stop). AudioSocket gets the TLV
frames of its .hex fixtures as one TCP stream behind a chunk-size byte. The bot, WAV and
config targets get their bodies and files as they are. The fuzzer adds to these
directories; rerunning this script only rewrites the seeds (named seed-*).
"""
import io
import pathlib
import struct
import wave

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
CORPUS = ROOT / "fuzz" / "corpus"
SEEDS = ROOT / "fuzz" / "seeds"
SEP = b"\xff"
BINARY = b"\x00"

# Messages voxhook sends, REST bodies and documentation: not what a decoder reads.
NOT_INBOUND = ("outbound_", "out_", "api_error", "ncco", "hangup_already_ended",
               "signature_example", "opened", "pong", "closed", "disconnect",
               "event_barge_in")
START = ("connected", "start", "metadata", "open", "media_start")
END = ("stop", "close", "hangup")

# Binary audio where the protocol carries it: 20 ms of small samples (no 0xFF byte, which
# separates frames), as L16 / PCMU / slin bytes.
AUDIO = BINARY + bytes([1, 0, 2, 0]) * 80
PROVIDERS = {
    # Twilio's own wire has no fixture directory; SignalWire's documented frames are it.
    "twilio": ("signalwire", False),
    "signalwire": ("signalwire", False),
    "telnyx": ("telnyx", False),
    "plivo": ("plivo", False),
    "exotel": ("exotel", False),
    "genesys": ("genesys", True),
    "jambonz": ("jambonz", True),
    "vonage": ("vonage", True),
    "asterisk": ("asterisk", True),
}


def compact(path):
    """A fixture as one frame: JSON kept as written but without line breaks (a frame is what
    the socket delivers; the layout inside it does not matter), plain text as its one line."""
    text = path.read_text().strip()
    if path.suffix == ".json":
        text = " ".join(line.strip() for line in text.splitlines())
    return text.encode()


def rank(name):
    for i, s in enumerate(START):
        if name.startswith(s):
            return (0, i, name)
    if name.startswith(END):
        return (2, 0, name)
    return (1, 0, name)


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data)


def provider_seeds(target, fixture_dir, binary):
    files = sorted(
        (p for p in (FIXTURES / fixture_dir).iterdir()
         if p.suffix in (".json", ".txt") and not p.name.startswith(NOT_INBOUND)),
        key=lambda p: rank(p.stem),
    )
    frames = {p.name: compact(p) for p in files}
    starts = [n for n in frames if rank(pathlib.Path(n).stem)[0] == 0]
    for n, f in frames.items():
        write(target, n, f)
    # The protocol's own start (the last of the leading ones: `connected` comes first).
    start = [frames[n] for n in starts]
    for n, f in frames.items():
        if n not in starts:
            write(target, f"after-start-{n}", SEP.join(start + [f]))
    convo = [frames[n] for n in frames]
    if binary:
        convo.insert(len(start), AUDIO)
        write(target, "start-audio", SEP.join(start + [AUDIO, AUDIO]))
    write(target, "conversation", SEP.join(convo))


def hex_frames(path):
    data = bytearray()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            data += bytes.fromhex(line)
    return bytes(data)


def audiosocket_seeds():
    d = FIXTURES / "audiosocket"
    order = ["uuid", "audio", "audio_20ms", "dtmf", "hangup"]
    for p in sorted(d.glob("*.hex")):
        write("audiosocket", p.stem, b"\x07" + hex_frames(p))
    stream = b"".join(hex_frames(d / f"{n}.hex") for n in order)
    # Chunk sizes that cut headers and payloads: one byte, a header's three, 100 bytes.
    for size in (1, 3, 100):
        write("audiosocket", f"call-chunk-{size}", bytes([size]) + stream)
    write("audiosocket", "error", b"\x05" + hex_frames(d / "uuid.hex") + hex_frames(d / "error.hex"))


def wav_bytes(channels, rate, width, frames):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        if width == 2:
            w.writeframes(b"".join(struct.pack("<h", (i * 997) % 20000 - 10000)
                                   for i in range(frames * channels)))
        else:
            w.writeframes(bytes((i * 7) % 256 for i in range(frames * channels * width)))
    return buf.getvalue()


def wav_seeds():
    write("wav", "mono-8k.wav", wav_bytes(1, 8000, 2, 160))
    write("wav", "stereo-16k.wav", wav_bytes(2, 16000, 2, 64))
    write("wav", "eight-bit.wav", wav_bytes(1, 8000, 1, 32))
    # The first 2 KiB of a real demo file: a header, then samples cut short.
    demo = ROOT / "assets" / "demo" / "caller-1-balance.wav"
    if demo.exists():
        write("wav", "demo-head.wav", demo.read_bytes()[:2048])


def copy_dir_seeds():
    """Hand-written seeds (bot bodies: the platforms' documented shapes) and the fixtures
    that are bodies as they are."""
    if SEEDS.exists():
        for target in SEEDS.iterdir():
            for p in target.iterdir():
                write(target.name, p.name, p.read_bytes())
    for p in (FIXTURES / "ingenious").glob("*.json"):
        write("ingenious", p.name, p.read_bytes())
    write("config", "voxhook.toml", (ROOT / "config" / "voxhook.toml").read_bytes())


def main():
    for old in CORPUS.glob("*/seed-*"):
        old.unlink()
    for target, (fixture_dir, binary) in PROVIDERS.items():
        provider_seeds(target, fixture_dir, binary)
    audiosocket_seeds()
    wav_seeds()
    copy_dir_seeds()
    for d in sorted(CORPUS.iterdir()):
        print(f"{d.name}: {len(list(d.glob('seed-*')))} seeds")


if __name__ == "__main__":
    main()
