//! Telephony: provider media-stream protocols behind one seam. Each provider is one module
//! that turns its wire frames into protocol-neutral [`InboundEvent`]s and encodes
//! [`OutboundCommand`]s back; `ws.rs` runs the socket with any of them. The call core never
//! sees provider JSON. A new provider is one module (its `[telephony.<name>]` config,
//! validation, request authentication, codec and call control) plus one line in
//! [`ProviderSettings`]. A provider that is a raw TCP listener rather than a WebSocket route
//! (AudioSocket) names its address in [`Provider::tcp_listen`]; `tcp.rs` turns its
//! connections into what `ws.rs` runs.

pub mod asterisk;
pub mod audiosocket;
pub mod control;
pub mod exotel;
pub mod genesys;
pub mod jambonz;
pub mod plivo;
pub mod signalwire;
pub mod tcp;
pub mod telnyx;
#[cfg(test)]
mod testing;
pub mod twilio;
pub mod vonage;
pub mod ws;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};

use control::{CallControl, ControlError};

crate::registry! {
    /// Validated `[telephony.<name>]`: one per registered provider, keyed by the table
    /// name (every provider is validated, with its defaults when its table is absent).
    pub enum ProviderSettings: dyn ProviderBackend, tag "provider", default "twilio" {
        /// Twilio Media Streams (`<Connect><Stream>`), route `/twilio`.
        Twilio(twilio::config::TwilioSettings) = "twilio",
        /// Telnyx media streaming (Call Control `streaming_start`, TeXML `<Stream>`), route `/telnyx`.
        Telnyx(telnyx::config::TelnyxSettings) = "telnyx",
        /// SignalWire cXML `<Connect><Stream>` (Twilio's wire, L16 too), route `/signalwire`.
        SignalWire(signalwire::config::SignalWireSettings) = "signalwire",
        /// Plivo Audio Streams (`<Stream bidirectional="true">`), route `/plivo`.
        Plivo(plivo::config::PlivoSettings) = "plivo",
        /// Exotel Voicebot applet streams (PCM16 LE), route `/exotel`.
        Exotel(exotel::config::ExotelSettings) = "exotel",
        /// jambonz `listen` verb streams (binary L16, subprotocol `audio.jambonz.org`), route `/jambonz`.
        Jambonz(jambonz::config::JambonzSettings) = "jambonz",
        /// Genesys Cloud AudioHook, Audio Connector flavour (signed upgrade, PCMU), route `/genesys`.
        Genesys(genesys::config::GenesysSettings) = "genesys",
        /// Vonage Voice API WebSocket (NCCO `connect`, binary L16), route `/vonage`.
        Vonage(vonage::config::VonageSettings) = "vonage",
        /// Asterisk chan_websocket (`Dial(WebSocket/…)`, subprotocol `media`), route `/asterisk`.
        Asterisk(asterisk::config::AsteriskSettings) = "asterisk",
        /// Asterisk AudioSocket (`AudioSocket(uuid,host:port)`), a raw TCP listener.
        AudioSocket(audiosocket::config::AudioSocketSettings) = "audiosocket",
    }
}

/// A provider's validated settings: whether it is served, and how it is built.
pub trait ProviderBackend: Debug + Send + Sync {
    /// Its route is served.
    fn enabled(&self) -> bool;
    /// Builds the provider (its call-control client too); `public_url` is
    /// `server.public_url`, which signed requests are checked against.
    fn build(&self, public_url: Option<&str>) -> Result<Arc<dyn Provider>, ControlError>;
}

/// How long a new connection may stay open without its start message, unless its provider
/// says otherwise ([`Provider::start_timeout`]).
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(15);

/// Per-provider limits on a media socket.
#[derive(Debug, Clone, Copy)]
pub struct LinkLimits {
    /// Largest frame accepted.
    pub max_message_bytes: usize,
    /// Media and digit events buffered before the start message.
    pub max_early_events: usize,
}

/// Why an upgrade request was refused before the WebSocket upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status sent.
    pub status: StatusCode,
    /// Reason label (one of `telemetry::metrics::REFUSAL_REASONS`).
    pub reason: &'static str,
}

/// A telephony provider as the server sees it: one WebSocket route, its own request
/// authentication, a fresh codec per connection, and optional call control.
pub trait Provider: Send + Sync {
    /// Stable name used in logs, metrics and `customData.provider`.
    fn name(&self) -> &'static str;
    /// The route served (e.g. `/twilio`).
    fn route(&self) -> &str;
    /// Socket limits.
    fn limits(&self) -> LinkLimits;
    /// Checks the upgrade request (`path_and_query` as received) before the upgrade.
    fn authenticate(&self, headers: &HeaderMap, path_and_query: &str) -> Result<(), Refusal>;
    /// The codec of a new connection.
    fn codec(&self) -> Codec;
    /// Hang-up and transfer through the provider's API, where configured.
    fn control(&self) -> Option<Arc<dyn CallControl>>;
    /// WebSocket subprotocols the provider's client asks for, most preferred first; the
    /// upgrade answers with the first one offered (jambonz refuses a socket without it).
    fn subprotocols(&self) -> &'static [&'static str] {
        &[]
    }
    /// For a provider that is a raw TCP listener instead of a WebSocket route (AudioSocket):
    /// the address it listens on. The server then serves no route for it; `authenticate` is
    /// not called (there is no request), and the connection's bytes go to its decoder as they
    /// arrive. `None` (the default): a WebSocket route.
    fn tcp_listen(&self) -> Option<SocketAddr> {
        None
    }
    /// How long a new connection may stay open without its start message.
    fn start_timeout(&self) -> Duration {
        DEFAULT_START_TIMEOUT
    }
}

/// What the provider told us when the stream started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallStart {
    /// The provider's call id (Twilio `callSid`).
    pub call_id: String,
    /// The media stream id (Twilio `streamSid`), needed on every outbound message.
    pub stream_id: String,
    /// Caller's number, when passed.
    pub caller: Option<String>,
    /// Called number, when passed.
    pub called: Option<String>,
    /// Every custom parameter as received.
    pub custom: BTreeMap<String, String>,
    /// Inbound audio sample rate (after decoding).
    pub inbound_rate: u32,
    /// Outbound audio sample rate expected by the provider.
    pub outbound_rate: u32,
}

/// Normalised events from the provider.
#[derive(Debug, Clone, PartialEq)]
pub enum InboundEvent {
    /// The stream started (boxed: it is rare and large, and every queued event pays for
    /// the largest variant).
    Start(Box<CallStart>),
    /// Caller audio, decoded to PCM at `CallStart::inbound_rate`.
    Audio(Vec<i16>),
    /// A keypad digit.
    Dtmf(char),
    /// The provider reached (or flushed) a mark we sent.
    Mark(String),
    /// The caller hung up / the provider ended the stream.
    Stop,
}

/// Normalised commands to the provider.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboundCommand {
    /// One frame of PCM at `CallStart::outbound_rate`.
    Audio(Vec<i16>),
    /// Ask to be told when playback reaches this point.
    Mark(String),
    /// Drop everything queued for playback.
    Clear,
}

/// Errors in a provider's stream; each ends the call (its bot session is still closed).
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// A text frame that is not valid JSON for this protocol.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A binary frame where the protocol only has text.
    #[error("unexpected binary frame ({0} bytes)")]
    UnexpectedBinary(usize),
    /// A message over the configured limit.
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Bytes received.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// A codec or rate voxhook cannot handle.
    #[error("unsupported media format: {0}")]
    UnsupportedFormat(String),
    /// Too much media before the start message.
    #[error("more than {0} media frames before start")]
    NoStart(usize),
    /// The socket failed.
    #[error("socket error: {0}")]
    Socket(String),
}

impl ProtocolError {
    /// The RFC 6455 close code and a short reason the socket is closed with: 1003 for data of
    /// a kind the protocol does not take, 1009 for a message over the limit, 1002 for any
    /// other protocol violation. The reason names the fault, never frame content.
    pub fn close_frame(&self) -> (u16, &'static str) {
        match self {
            ProtocolError::Malformed(_) => (1002, "malformed message"),
            ProtocolError::UnexpectedBinary(_) => (1003, "binary frames are not accepted"),
            ProtocolError::TooLarge { .. } => (1009, "message too big"),
            ProtocolError::UnsupportedFormat(_) => (1003, "unsupported media format"),
            ProtocolError::NoStart(_) => (1002, "no start message"),
            ProtocolError::Socket(_) => (1002, "protocol error"),
        }
    }
}

/// The keypad key a provider's DTMF `digit` names: one of `0`–`9`, `*`, `#`, `A`–`D`.
pub fn dtmf_key(digit: &str) -> Result<char, ProtocolError> {
    let mut keys = digit.chars();
    match (keys.next(), keys.next()) {
        (Some(k), None) if k.is_ascii_digit() || matches!(k, '*' | '#' | 'A'..='D') => Ok(k),
        _ => Err(ProtocolError::Malformed(format!("dtmf digit {digit:?}"))),
    }
}

/// One frame on the media socket, either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireFrame {
    /// A text frame (JSON protocols).
    Text(String),
    /// A binary frame (raw PCM protocols).
    Binary(Vec<u8>),
}

/// The reader half of a connection's codec: frames in, events out. Replies the protocol
/// requires of the adapter itself (a pong, an `opened`) go to `replies`; the socket writer
/// sends them, so the halves share no lock.
pub trait MediaDecoder: Send + 'static {
    /// Decodes one text frame (`None` for frames with no meaning to the call, like
    /// `connected` or unknown events, which the protocol logs).
    fn decode_text(
        &mut self,
        text: &str,
        replies: &mut Vec<WireFrame>,
    ) -> Result<Option<InboundEvent>, ProtocolError>;
    /// Decodes one binary frame. Text-only protocols (the JSON family) keep this default,
    /// which refuses the frame.
    fn decode_binary(
        &mut self,
        data: &[u8],
        _replies: &mut Vec<WireFrame>,
    ) -> Result<Option<InboundEvent>, ProtocolError> {
        Err(ProtocolError::UnexpectedBinary(data.len()))
    }
    /// An event the decoder held back and now releases, taken after each decoded frame until
    /// `None` (Telnyx: media that came before start, decoded once start names the codec, and
    /// digits reordered by when they were pressed). Most protocols hold nothing back.
    fn take_pending(&mut self) -> Option<InboundEvent> {
        None
    }
    /// A flow-control change the provider asked for since the last frame (Asterisk
    /// `MEDIA_XOFF`/`MEDIA_XON`), taken after each decoded frame and handed to the encoder.
    /// Protocols without flow control keep this default.
    fn take_flow(&mut self) -> Option<Flow> {
        None
    }
}

/// Outbound flow control the provider asks for: its playout queue is full or has room again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Stop sending media: what is sent now may be dropped.
    Pause,
    /// Sending is safe again.
    Resume,
}

/// For a provider's config tests: `[telephony.<name>]` from TOML, errors as `"key: message"`.
#[cfg(test)]
pub(crate) fn parse_section(name: &str, toml: &str) -> Result<ProviderSettings, Vec<String>> {
    let toml = format!("provider = \"{name}\"\n{toml}");
    ProviderSettings::from_toml(&format!("telephony.{name}"), &toml).map_err(|errs| {
        errs.into_iter()
            .map(|e| format!("{}: {}", e.key, e.message))
            .collect()
    })
}

/// Logs a text message whose event the protocol does not know (ignored, never fatal: providers
/// add events), with only its start so a payload never floods the log.
pub fn log_unknown_event(provider: &str, text: &str) {
    tracing::warn!(
        provider,
        message_prefix = %text.chars().take(80).collect::<String>(),
        "Unknown media-stream event ignored."
    );
}

/// Custom parameters from a JSON object: strings as they are, other values as their JSON text.
pub fn custom_parameters(
    map: impl IntoIterator<Item = (String, serde_json::Value)>,
) -> BTreeMap<String, String> {
    map.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect()
}

/// Validates a `basic_auth_user` / `basic_auth_password` pair of a provider's config: both or
/// neither, no `:` in the user. The pair when set.
pub(crate) fn basic_auth_setting(
    user: String,
    password: crate::config::SensitiveString,
    ctx: &crate::component::Ctx<'_>,
    errs: &mut crate::component::Errors,
) -> Option<(String, crate::config::SensitiveString)> {
    errs.check(
        !user.contains(':'),
        &ctx.key("basic_auth_user"),
        "must not contain `:`",
    );
    let on = !user.is_empty();
    errs.check(
        on != password.is_empty(),
        &ctx.key("basic_auth_password"),
        &format!(
            "basic_auth_user and basic_auth_password go together (set {})",
            ctx.env_var("basic_auth_password")
        ),
    );
    on.then_some((user, password))
}

/// Validates a provider's `stream_token` (it rides in a URL): the token when set.
pub(crate) fn stream_token_setting(
    token: crate::config::SensitiveString,
    ctx: &crate::component::Ctx<'_>,
    errs: &mut crate::component::Errors,
) -> Option<crate::config::SensitiveString> {
    errs.check(
        token
            .expose()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')),
        &ctx.key("stream_token"),
        "must be URL-safe (letters, digits, - _ . ~)",
    );
    (!token.is_empty()).then_some(token)
}

/// Checks a shared secret carried as `?{param}=<token>` in the stream URL, in constant time; a
/// missing or wrong one is a 403, logged without its value (Plivo, Vonage: their upgrades are
/// not signed, so the secret rides in the URL the operator configures).
pub fn check_query_token(
    path_and_query: &str,
    param: &str,
    token: &crate::config::SensitiveString,
    provider: &str,
) -> Result<(), Refusal> {
    let got = path_and_query
        .split_once('?')
        .map_or("", |(_, q)| q)
        .split('&')
        .find_map(|kv| kv.strip_prefix(param)?.strip_prefix('='))
        .unwrap_or("");
    if crate::bot::constant_time_eq(got.as_bytes(), token.expose().as_bytes()) {
        Ok(())
    } else {
        tracing::warn!(
            provider,
            token_present = !got.is_empty(),
            "Stream token missing or wrong; connection refused."
        );
        Err(Refusal {
            status: StatusCode::FORBIDDEN,
            reason: "signature",
        })
    }
}

/// Checks HTTP Basic auth on an upgrade (`Authorization: Basic base64(user:password)`) in
/// constant time; a missing or wrong header is a 401, logged without its value.
pub fn check_basic_auth(
    headers: &HeaderMap,
    user: &str,
    password: &crate::config::SensitiveString,
    provider: &str,
) -> Result<(), Refusal> {
    use base64::Engine as _;
    let want =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password.expose()));
    let got = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .unwrap_or("");
    if crate::bot::constant_time_eq(got.trim().as_bytes(), want.as_bytes()) {
        Ok(())
    } else {
        tracing::warn!(
            provider,
            header_present = !got.is_empty(),
            "Basic auth missing or wrong; connection refused."
        );
        Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            reason: "signature",
        })
    }
}

/// The writer half of a connection's codec: commands in, frames out.
pub trait MediaEncoder: Send + 'static {
    /// The stream started (the decoder produced `start`); learn the ids frames carry.
    fn started(&mut self, start: &CallStart);
    /// Encodes a command into `out` (nothing before start).
    fn encode(&mut self, cmd: &OutboundCommand, out: &mut Vec<WireFrame>);
    /// A protocol reply of the decoder, on its way out: protocols that number every message
    /// they send (Genesys `seq`) stamp it here, in send order; most pass it on as is.
    fn reply(&mut self, frame: WireFrame, out: &mut Vec<WireFrame>) {
        out.push(frame);
    }
    /// The socket is about to close (the call ended either way; `fault`: because of a
    /// protocol violation): the protocol's last words, if it has any (Genesys `disconnect`
    /// when the peer did not end the session itself).
    fn closing(&mut self, _fault: bool, _out: &mut Vec<WireFrame>) {}
    /// The provider paused or resumed outbound media ([`MediaDecoder::take_flow`]); an
    /// encoder that honours it holds media while paused and releases it into `out` on resume.
    fn flow(&mut self, _flow: Flow, _out: &mut Vec<WireFrame>) {}
    /// For an encoder that paces playback itself (the peer plays what it gets at once, with
    /// no buffer of its own): when it next has something due, `None` when it holds nothing.
    /// The socket writer then calls [`Self::release`]. Most encoders send at once.
    fn next_due(&self) -> Option<tokio::time::Instant> {
        None
    }
    /// The due time came: what is due at `now` goes into `out`.
    fn release(&mut self, _now: tokio::time::Instant, _out: &mut Vec<WireFrame>) {}
    /// An event the encoder made itself, taken after each command and release until `None`
    /// (a mark whose audio it has played out, where the protocol has no marks).
    fn take_event(&mut self) -> Option<InboundEvent> {
        None
    }
}

/// A new connection's codec, split for the socket's reader and writer tasks.
pub struct Codec {
    /// Reader half.
    pub decoder: Box<dyn MediaDecoder>,
    /// Writer half.
    pub encoder: Box<dyn MediaEncoder>,
}
