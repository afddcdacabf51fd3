//! `voxhook call`: a command-line softphone for testing a deployment without a phone. It
//! speaks Twilio's Media Streams protocol to a running voxhook (`ws://` or `wss://`, with an
//! `X-Twilio-Signature` when given the auth token), streams WAV files or typed lines spoken
//! by the embedded flite, sends keys, prints what the bot said (transcribed from the audio
//! it played, with the embedded whisper) and saves the bot's audio.
//!
//! It is [`SimCaller`] with a script: each step waits until the bot has been quiet for a
//! moment, so the caller talks the way a person would, after the prompt.

use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tokio::io::AsyncBufReadExt as _;

use crate::audio::resample::Resampler;
use crate::audio::{wav, AudioFrame, TELEPHONY_RATE};
use crate::config::{SensitiveString, WhisperSettings};
use crate::sim::caller::{caller_speech, CallerLog, CallerOptions, SimCaller};
use crate::sim::demo::load_caller_audio;
use crate::stt::whisper::WhisperStt;
use crate::stt::SttError;
use crate::telephony::twilio::signature;

/// Shortest stretch of bot audio worth transcribing (100 ms at 8 kHz).
const MIN_SEGMENT: usize = 800;

/// One thing the caller does.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Speak this text (flite's `rms` voice).
    Say(String),
    /// Stream this WAV file.
    Play(PathBuf),
    /// Press these keys.
    Keys(String),
    /// Stay on the line without waiting for the bot.
    Wait(Duration),
    /// Hang up (also done after the last step).
    Hangup,
}

/// A step that could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("bad step `{0}`: use say:TEXT, play:FILE.wav, keys:DIGITS, wait:SECONDS or hangup")]
pub struct BadStep(String);

impl FromStr for Step {
    type Err = BadStep;

    /// `say:TEXT`, `play:FILE`, `keys:DIGITS`, `wait:SECONDS`, `hangup`.
    fn from_str(s: &str) -> Result<Self, BadStep> {
        let bad = || BadStep(s.to_string());
        let (kind, arg) = s.split_once(':').unwrap_or((s, ""));
        match kind {
            "say" if !arg.trim().is_empty() => Ok(Step::Say(arg.trim().to_string())),
            "play" if !arg.is_empty() => Ok(Step::Play(PathBuf::from(arg))),
            "keys"
                if !arg.is_empty()
                    && arg
                        .chars()
                        .all(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D')) =>
            {
                Ok(Step::Keys(arg.to_string()))
            }
            "wait" => arg
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Step::Wait(Duration::from_secs_f64(s)))
                .ok_or_else(bad),
            "hangup" if arg.is_empty() => Ok(Step::Hangup),
            _ => Err(bad()),
        }
    }
}

/// A typed line: `/keys 1234#`, `/play file.wav`, `/wait 2`, `/hangup`, or words to say.
pub fn parse_line(line: &str) -> Result<Option<Step>, BadStep> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    match line.strip_prefix('/') {
        Some(cmd) => {
            let (kind, arg) = cmd.split_once(' ').unwrap_or((cmd, ""));
            format!("{kind}:{}", arg.trim())
                .trim_end_matches(':')
                .parse()
                .map(Some)
        }
        None => Ok(Some(Step::Say(line.to_string()))),
    }
}

/// Softphone settings.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// `ws://host:port/twilio` or `wss://host/twilio`.
    pub url: String,
    /// Caller's number (`from` parameter).
    pub from: String,
    /// Called number (`to` parameter).
    pub to: String,
    /// More `<Parameter>`s.
    pub parameters: Vec<(String, String)>,
    /// What to do; empty: read lines from stdin.
    pub steps: Vec<Step>,
    /// whisper model used to transcribe what the bot said.
    pub model_path: PathBuf,
    /// Where to save the bot's audio (8 kHz mono WAV).
    pub out_wav: Option<PathBuf>,
    /// The bot counts as done after this much silence.
    pub quiet: Duration,
    /// Longest wait for the bot to speak after a step.
    pub answer_timeout: Duration,
    /// Twilio auth token: sign the connection like Twilio (`X-Twilio-Signature`).
    pub auth_token: Option<SensitiveString>,
}

/// Softphone failures.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The whisper model could not load.
    #[error("speech recognition: {0}")]
    Stt(#[from] SttError),
    /// The connection failed.
    #[error("{0}")]
    Connect(String),
    /// A WAV or the caller's speech could not be prepared, or output failed.
    #[error("{0}")]
    Io(String),
    /// A typed line was not a step.
    #[error(transparent)]
    Step(#[from] BadStep),
}

/// Transcribes 8 kHz telephony audio with `stt` (resampled to whisper's 16 kHz).
pub async fn transcribe(stt: &WhisperStt, pcm_8k: &[i16]) -> Result<String, SttError> {
    let mut r = Resampler::new(TELEPHONY_RATE, crate::audio::INTERNAL_RATE)
        .map_err(|e| SttError::Decode(e.to_string()))?;
    let mut pcm = Vec::with_capacity(pcm_8k.len() * 2);
    r.process(pcm_8k, &mut pcm);
    r.flush(&mut pcm);
    Ok(stt.transcribe(pcm).await?.text)
}

/// Prints each bot message once, as playback reaches its end (its mark).
struct Transcriber<'a, W> {
    stt: WhisperStt,
    out: &'a mut W,
    done_upto: usize,
    marks_seen: usize,
}

impl<W: Write> Transcriber<'_, W> {
    async fn print_new(&mut self, log: &CallerLog, to_end: bool) -> Result<(), CallError> {
        let mut cuts: Vec<usize> = log.mark_offsets[self.marks_seen..]
            .iter()
            .map(|(_, at)| *at)
            .collect();
        self.marks_seen = log.mark_offsets.len();
        if to_end {
            cuts.push(log.heard.len());
        }
        for cut in cuts {
            if cut < self.done_upto + MIN_SEGMENT {
                continue;
            }
            let text = transcribe(&self.stt, &log.heard[self.done_upto..cut]).await?;
            self.done_upto = cut;
            self.line("bot", text.trim())?;
        }
        Ok(())
    }

    fn line(&mut self, who: &str, what: &str) -> Result<(), CallError> {
        writeln!(self.out, "  {who:<6} : {what}").map_err(|e| CallError::Io(e.to_string()))?;
        self.out.flush().map_err(|e| CallError::Io(e.to_string()))
    }
}

/// Places the call, runs the steps (or stdin lines), prints the conversation to `out`.
pub async fn run<W: Write>(opts: CallOptions, out: &mut W) -> Result<(), CallError> {
    let stt = WhisperStt::load(&WhisperSettings {
        model_path: opts.model_path.display().to_string(),
        language: "en".into(),
        threads: 2,
        max_parallel_decodes: 1,
    })?;
    let mut caller_opts = CallerOptions::new(&opts.url, &opts.from, &opts.to);
    caller_opts
        .parameters
        .extend(opts.parameters.iter().cloned());
    if let Some(token) = &opts.auth_token {
        caller_opts.signature = Some(signature::sign(token.expose(), &opts.url));
    }
    let caller = SimCaller::connect(caller_opts)
        .await
        .map_err(CallError::Connect)?;
    writeln!(
        out,
        "voxhook call: connected to {} as {} (call {})",
        opts.url, opts.from, caller.options.call_sid
    )
    .map_err(|e| CallError::Io(e.to_string()))?;
    let mut t = Transcriber {
        stt,
        out,
        done_upto: 0,
        marks_seen: 0,
    };
    wait_and_print(&caller, &opts, &mut t).await?;
    if opts.steps.is_empty() {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Some(line) = lines
            .next_line()
            .await
            .map_err(|e| CallError::Io(e.to_string()))?
        {
            match parse_line(&line) {
                Ok(Some(step)) => {
                    if !do_step(&caller, &opts, &mut t, step).await? {
                        break;
                    }
                }
                Ok(None) => {}
                Err(e) => t.line("error", &e.to_string())?,
            }
        }
    } else {
        for step in opts.steps.clone() {
            if !do_step(&caller, &opts, &mut t, step).await? {
                break;
            }
        }
    }
    t.line("caller", "(hangs up)")?;
    caller.hang_up().await;
    let log = caller.log();
    t.print_new(&log, true).await?;
    let summary = format!(
        "Heard {:.1} s of bot audio, {} message(s) played to the end.",
        log.heard.len() as f64 / f64::from(TELEPHONY_RATE),
        log.marks_played.len()
    );
    writeln!(t.out, "{summary}").map_err(|e| CallError::Io(e.to_string()))?;
    if let Some(path) = &opts.out_wav {
        let frame = AudioFrame {
            samples: log.heard,
            sample_rate: TELEPHONY_RATE,
        };
        wav::write(path, &frame).map_err(|e| CallError::Io(e.to_string()))?;
        writeln!(t.out, "Bot audio saved to {}.", path.display())
            .map_err(|e| CallError::Io(e.to_string()))?;
    }
    Ok(())
}

/// Carries out one step; false when the call is over.
async fn do_step<W: Write>(
    caller: &SimCaller,
    opts: &CallOptions,
    t: &mut Transcriber<'_, W>,
    step: Step,
) -> Result<bool, CallError> {
    if caller.log().closed {
        t.line("caller", "(the call was ended by voxhook)")?;
        return Ok(false);
    }
    match step {
        Step::Say(text) => {
            t.line("caller", &format!("(says) {text}"))?;
            caller
                .say(caller_speech(&text).await.map_err(CallError::Io)?)
                .await;
            caller.finish_speaking().await;
        }
        Step::Play(path) => {
            t.line("caller", &format!("(plays) {}", path.display()))?;
            let pcm = load_caller_audio(&path).map_err(|e| CallError::Io(e.to_string()))?;
            caller.say(pcm).await;
            caller.finish_speaking().await;
        }
        Step::Keys(keys) => {
            t.line("caller", &format!("(presses) {keys}"))?;
            caller.press(&keys).await;
        }
        Step::Wait(d) => {
            tokio::time::sleep(d).await;
            return Ok(true);
        }
        Step::Hangup => return Ok(false),
    }
    wait_and_print(caller, opts, t).await?;
    Ok(true)
}

async fn wait_and_print<W: Write>(
    caller: &SimCaller,
    opts: &CallOptions,
    t: &mut Transcriber<'_, W>,
) -> Result<(), CallError> {
    let log = match caller.wait_bot_quiet(opts.quiet, opts.answer_timeout).await {
        Ok(log) => log,
        Err(log) => {
            t.line(
                "bot",
                &format!("(silent for {} s)", opts.answer_timeout.as_secs()),
            )?;
            log
        }
    };
    t.print_new(&log, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_from_arguments_and_typed_lines() {
        assert_eq!(
            "say:Hello there".parse::<Step>().unwrap(),
            Step::Say("Hello there".into())
        );
        assert_eq!(
            "keys:1234#".parse::<Step>().unwrap(),
            Step::Keys("1234#".into())
        );
        assert_eq!(
            "wait:1.5".parse::<Step>().unwrap(),
            Step::Wait(Duration::from_millis(1500))
        );
        assert_eq!("hangup".parse::<Step>().unwrap(), Step::Hangup);
        assert!("keys:12x".parse::<Step>().is_err());
        assert!("shout:hi".parse::<Step>().is_err());
        assert_eq!(
            parse_line("/keys 1234#").unwrap(),
            Some(Step::Keys("1234#".into()))
        );
        assert_eq!(parse_line("/hangup").unwrap(), Some(Step::Hangup));
        assert_eq!(
            parse_line(" my balance please ").unwrap(),
            Some(Step::Say("my balance please".into()))
        );
        assert_eq!(parse_line("   ").unwrap(), None);
        assert!(parse_line("/dance").is_err());
    }
}
