# The pipecat side of the side-by-side capacity benchmark (issue 14; `scripts/versus.sh`,
# README "Performance" -> "Side by side with pipecat"). A minimal pipecat bot that does what
# voxhook does with its fake engines, so that `benches/load.rs --external` can drive both
# with the same callers:
#
#   Twilio Media Streams in (pipecat's TwilioFrameSerializer on its FastAPI WebSocket
#   transport, auto hang-up off: there is no Twilio account) -> VAD (pipecat's own Silero,
#   VADProcessor; or none with --vad off) -> FakeStt -> KoreBot (a text turn POSTed to the
#   same local Kore simulator, webhook v2: JWT, ON_CONNECT, pollId polling, SESSION_CLOSURE)
#   -> FakeTts -> audio back, a mark after each bot message.
#
# The fakes copy voxhook's `[stt] provider = "fake"` and `[tts] provider = "fake"` as the
# load bench configures them: the scripted transcript 50 ms after the end of the utterance;
# a 440 Hz tone of 60 ms per character at 16 kHz, one chunk per sentence, the first after
# 30 ms. Everything the call does not need is left out, so pipecat is measured at its
# leanest: no LLM context or aggregators, no RTVI, input audio stops at the STT.
#
# --vad off: no VAD runs; FakeStt ends the turn after 700 ms without a sample above 1000
# since the last one (the rule of voxhook's fake `endpointing_ms = 700`, which the load bench
# sets for voxhook's --vad off row).
#
# One process, one asyncio loop (pipecat's model: one pipeline per call in the process).
# Started by the load bench with its port and the simulator's URL; /ready answers when up.

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import sys
import time
import uuid

import aiohttp
import numpy as np
import uvicorn
from fastapi import FastAPI, WebSocket
from fastapi.responses import PlainTextResponse
from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    OutputTransportMessageFrame,
    StartFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)
from pipecat.workers.runner import WorkerRunner

# The pipeline runs at Twilio's 8 kHz in and out, as pipecat's Twilio examples configure it
# (Silero takes 8 kHz; the serializer then neither resamples nor buffers: at 16 kHz its
# streaming resampler held the output back and sent it in ~95 ms bursts).
PIPELINE_RATE = 8_000
# voxhook's fake TTS renders at 16 kHz; pipecat's output transport resamples it, as voxhook's
# speaker does.
TTS_RATE = 16_000
# voxhook's fake STT and TTS as benches/load.rs configures them.
TRANSCRIPT = "I would like to check my balance."
STT_LATENCY = 0.050
TTS_FIRST_CHUNK = 0.030
MS_PER_CHAR = 60
TONE_HZ = 440
# A sample above this is speech for the VAD-less endpointing (voxhook's fake STT: LOUD).
LOUD = 1_000
# Silence that ends a turn: voxhook's `end_of_utterance_ms` default, for both modes.
END_OF_TURN_SECS = 0.7
# voxhook's `poll_interval_ms` in the load bench's config.
POLL_INTERVAL = 0.1

ARGS = None
HTTP: aiohttp.ClientSession | None = None


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(user: str) -> str:
    """An HS256 bearer token as voxhook mints it: appId, sub, iat, short exp, fresh jti."""
    now = int(time.time())
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {
        "appId": ARGS.client_id,
        "sub": "pipecat-versus",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "userIdentity": user,
    }
    body = b64url(json.dumps(claims).encode())
    sig = hmac.new(ARGS.client_secret.encode(), f"{header}.{body}".encode(), hashlib.sha256)
    return f"{header}.{body}.{b64url(sig.digest())}"


def split_sentences(text: str) -> list[str]:
    """voxhook's `tts::split_sentences` (without the long-comma rule: no such text here)."""
    out, cur = [], ""
    for i, c in enumerate(text):
        cur += c
        nxt = text[i + 1] if i + 1 < len(text) else " "
        if c in ".!?;\n" and nxt.isspace():
            if any(ch.isalnum() for ch in cur):
                out.append(cur.strip())
            cur = ""
    if any(ch.isalnum() for ch in cur):
        out.append(cur.strip())
    return out


class FakeStt(FrameProcessor):
    """The scripted transcript STT_LATENCY after the end of each utterance: the VAD's end
    (VADUserStoppedSpeakingFrame) or, with `endpointing`, END_OF_TURN_SECS without a loud
    sample. Input audio is consumed here (nothing downstream needs it)."""

    def __init__(self, endpointing: bool):
        super().__init__()
        self._endpointing = endpointing
        self._speaking = False
        self._quiet = 0.0

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            if self._endpointing:
                pcm = np.frombuffer(frame.audio, dtype=np.int16)
                loud = pcm.size > 0 and int(np.abs(pcm).max()) > LOUD
                if loud:
                    self._speaking, self._quiet = True, 0.0
                elif self._speaking:
                    self._quiet += pcm.size / frame.sample_rate
                    if self._quiet >= END_OF_TURN_SECS:
                        self._speaking = False
                        self.create_task(self._transcribe())
            return
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._speaking = True
        elif isinstance(frame, VADUserStoppedSpeakingFrame) and self._speaking:
            self._speaking = False
            self.create_task(self._transcribe())
        await self.push_frame(frame, direction)

    async def _transcribe(self):
        await asyncio.sleep(STT_LATENCY)
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        await self.push_frame(TranscriptionFrame(TRANSCRIPT, "caller", ts, finalized=True))


class KoreBot(FrameProcessor):
    """The Kore.ai XO webhook v2 client: ON_CONNECT at the start, one text turn per
    transcript (one at a time, as voxhook sends them), each reply's messages as they come
    (the response, then `pollId` polls), SESSION_CLOSURE at the end."""

    def __init__(self, user: str, call_id: str):
        super().__init__()
        self._user = user
        self._call_id = call_id
        self._turns = asyncio.Lock()
        self._closed = False

    def _body(self, kind: str, val: str, new: bool = False) -> dict:
        body = {
            "message": {"type": kind, "val": val},
            "from": {"id": self._user},
            "to": {"id": ARGS.bot_id},
            "customData": {"callId": self._call_id},
        }
        if new:
            body["session"] = {"new": True}
        return body

    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {jwt(self._user)}"}

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame):
            self.create_task(self._turn(self._body("event", "ON_CONNECT", new=True)))
        elif isinstance(frame, TranscriptionFrame):
            self.create_task(self._turn(self._body("text", frame.text)))
        elif isinstance(frame, (EndFrame, CancelFrame)) and not self._closed:
            self._closed = True
            # Outlives the pipeline: the call is over, the closure still goes out.
            asyncio.get_running_loop().create_task(
                self._post(self._body("event", "SESSION_CLOSURE"))
            )

    async def _post(self, body: dict) -> dict:
        try:
            async with HTTP.post(ARGS.kore_url, json=body, headers=self._headers()) as r:
                return await r.json(content_type=None)
        except Exception as e:  # a failed turn is logged and skipped, as in voxhook
            logger.warning(f"Kore request failed: {e}")
            return {}

    async def _say(self, reply: dict):
        for item in reply.get("data") or []:
            if item.get("type") == "text" and isinstance(item.get("val"), str):
                await self.push_frame(TTSSpeakFrame(item["val"]))

    async def _turn(self, body: dict):
        async with self._turns:
            reply = await self._post(body)
            await self._say(reply)
            poll = reply.get("pollId")
            while poll and not self._closed:
                await asyncio.sleep(POLL_INTERVAL)
                url = f"{ARGS.kore_url}/poll/{poll}"
                try:
                    async with HTTP.get(url, headers=self._headers()) as r:
                        reply = await r.json(content_type=None)
                except Exception as e:
                    logger.warning(f"Kore poll failed: {e}")
                    return
                if reply.get("status") == "Inprogress":
                    continue
                await self._say(reply)
                poll = reply.get("pollId")


class FakeTts(FrameProcessor):
    """voxhook's fake TTS: per message, TTS_FIRST_CHUNK, then one tone chunk per sentence;
    after the message, a Twilio mark (the transport sends it in order, after the audio)."""

    def __init__(self, stream_sid: str):
        super().__init__()
        self._sid = stream_sid
        self._n = 0
        step = 2 * np.pi * TONE_HZ / TTS_RATE
        self._tone = (np.sin(np.arange(TTS_RATE * 30) * step) * 8000).astype(np.int16)

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if not isinstance(frame, TTSSpeakFrame):
            await self.push_frame(frame, direction)
            return
        self._n += 1
        await asyncio.sleep(TTS_FIRST_CHUNK)
        await self.push_frame(TTSStartedFrame())
        for sentence in split_sentences(frame.text):
            n = TTS_RATE * MS_PER_CHAR * len(sentence) // 1000
            audio = self._tone[:n].tobytes()
            await self.push_frame(TTSAudioRawFrame(audio, TTS_RATE, 1))
        await self.push_frame(TTSStoppedFrame())
        mark = {"event": "mark", "streamSid": self._sid, "mark": {"name": f"pc-{self._n}"}}
        await self.push_frame(OutputTransportMessageFrame(message=mark))


app = FastAPI()


@app.get("/ready")
async def ready():
    return PlainTextResponse("ok")


@app.websocket("/twilio")
async def twilio(ws: WebSocket):
    await ws.accept()
    # Twilio's `connected`, then `start` (what pipecat's runner `parse_telephony_websocket`
    # reads too).
    start = {}
    for _ in range(2):
        msg = json.loads(await ws.receive_text())
        if msg.get("event") == "start":
            start = msg["start"]
            break
    stream_sid = start.get("streamSid", "")
    call_sid = start.get("callSid", "")
    user = start.get("customParameters", {}).get("from", call_sid)
    serializer = TwilioFrameSerializer(
        stream_sid=stream_sid,
        call_sid=call_sid,
        params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
    )
    transport = FastAPIWebsocketTransport(
        websocket=ws,
        params=FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            add_wav_header=False,
            serializer=serializer,
        ),
    )
    stages = [transport.input()]
    if ARGS.vad == "on":
        vad = SileroVADAnalyzer(params=VADParams(stop_secs=END_OF_TURN_SECS))
        stages.append(VADProcessor(vad_analyzer=vad))
    stages += [
        FakeStt(endpointing=ARGS.vad == "off"),
        KoreBot(user, call_sid),
        FakeTts(stream_sid),
        transport.output(),
    ]
    worker = PipelineWorker(
        Pipeline(stages),
        params=PipelineParams(
            audio_in_sample_rate=PIPELINE_RATE, audio_out_sample_rate=PIPELINE_RATE
        ),
        enable_rtvi=False,
        idle_timeout_secs=None,
    )

    @transport.event_handler("on_client_disconnected")
    async def on_disconnected(_transport, _client):
        await worker.cancel()

    # One runner per call, as pipecat's telephony examples run one pipeline per socket.
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()


def main():
    global ARGS, HTTP
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=int(os.environ.get("VERSUS_PORT", "8765")))
    p.add_argument("--kore-url", default=os.environ.get("VERSUS_KORE_URL"))
    p.add_argument("--client-id", default=os.environ.get("VERSUS_CLIENT_ID", "cs-load"))
    p.add_argument("--client-secret", default=os.environ.get("VERSUS_CLIENT_SECRET"))
    p.add_argument("--bot-id", default=os.environ.get("VERSUS_BOT_ID", "st-load"))
    p.add_argument("--vad", choices=["on", "off"], default=os.environ.get("VERSUS_VAD", "on"))
    p.add_argument("--log-level", default=os.environ.get("VERSUS_LOG_LEVEL", "INFO"))
    ARGS = p.parse_args()
    if not ARGS.kore_url or not ARGS.client_secret:
        sys.exit("bot.py: --kore-url and --client-secret (or VERSUS_KORE_URL, VERSUS_CLIENT_SECRET)")
    logger.remove()
    logger.add(sys.stderr, level=ARGS.log_level)

    async def serve():
        global HTTP
        # One pooled client for every call (voxhook shares one reqwest client too).
        HTTP = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        config = uvicorn.Config(app, host="127.0.0.1", port=ARGS.port, log_level="warning")
        await uvicorn.Server(config).serve()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
