//! What every fuzz target shares: building a provider from its defaults, cutting one input
//! into the frames of one connection, and driving a codec the way `telephony/ws.rs` does.

use std::cell::RefCell;
use std::sync::Arc;

use voxhook::component::{toml_value, Errors};
use voxhook::telephony::{
    Codec, InboundEvent, OutboundCommand, Provider, ProviderSettings, WireFrame,
};

/// Separates the frames of one connection in an input. 0xFF never occurs in UTF-8, so a text
/// frame is never cut; binary frames in the corpus avoid it (their content matters less than
/// their length and the order of the frames around them).
pub const FRAME_SEPARATOR: u8 = 0xFF;

/// A frame's first byte when it is binary (a text frame never starts with NUL in practice).
pub const BINARY_MARK: u8 = 0x00;

/// One frame as the socket delivers it.
#[derive(Debug)]
pub enum Frame<'a> {
    /// A text frame (invalid UTF-8 replaced, since the WebSocket layer only passes UTF-8).
    Text(String),
    /// A binary frame.
    Binary(&'a [u8]),
}

/// The frames of one input, in order.
pub fn frames(data: &[u8]) -> impl Iterator<Item = Frame<'_>> {
    data.split(|b| *b == FRAME_SEPARATOR)
        .map(|chunk| match chunk {
            [BINARY_MARK, rest @ ..] => Frame::Binary(rest),
            text => Frame::Text(String::from_utf8_lossy(text).into_owned()),
        })
}

/// The provider `name` built from `[telephony.<name>]` written as `toml` (its defaults for
/// every key not named), the way `app.rs` builds an enabled provider.
pub fn provider(name: &str, toml: &str) -> Arc<dyn Provider> {
    let path = format!("telephony.{name}");
    let mut errs = Errors::default();
    let value = toml_value(toml, &path, &mut errs).expect("fuzz provider TOML");
    let settings = ProviderSettings::named(name, value, &path, None, &mut errs)
        .unwrap_or_else(|| panic!("fuzz provider settings: {:?}", errs.0));
    assert!(errs.0.is_empty(), "fuzz provider settings: {:?}", errs.0);
    settings.get().build(None).expect("fuzz provider build")
}

/// How a target checks the frames an encoder writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFrames {
    /// Every outbound text frame is JSON (the JSON family).
    Json,
    /// Outbound text frames are plain commands (Asterisk).
    Plain,
}

/// Drives one connection of `provider` with the frames in `data`: each frame over the size
/// limit is refused as `ws.rs` refuses it, every other one is decoded, pending events and
/// flow changes are taken after it, a start is handed to the encoder, and the encoder then
/// writes audio, a mark and a clear. Panics (the finding) when a decoder or encoder panics,
/// a start names a rate of zero (every later stage divides by it), or an outbound text frame
/// is not what `text` says.
pub fn drive(provider: &dyn Provider, data: &[u8], text: TextFrames) {
    let limit = provider.limits().max_message_bytes;
    let Codec {
        mut decoder,
        mut encoder,
    } = provider.codec();
    let mut replies = Vec::new();
    let mut out = Vec::new();
    let mut started = false;
    for frame in frames(data) {
        let first = match &frame {
            Frame::Text(t) if t.len() > limit => break,
            Frame::Binary(b) if b.len() > limit => break,
            Frame::Text(t) => decoder.decode_text(t, &mut replies),
            Frame::Binary(b) => decoder.decode_binary(b, &mut replies),
        };
        // An error ends the connection in `ws.rs`: nothing after it is read.
        let Ok(first) = first else { break };
        let mut events: Vec<InboundEvent> = first.into_iter().collect();
        while let Some(ev) = decoder.take_pending() {
            events.push(ev);
        }
        for ev in &events {
            if let InboundEvent::Start(s) = ev {
                assert!(
                    s.inbound_rate > 0 && s.outbound_rate > 0,
                    "start with a zero rate: {s:?}"
                );
                encoder.started(s);
                started = true;
            }
        }
        if let Some(flow) = decoder.take_flow() {
            encoder.flow(flow, &mut out);
        }
        for reply in replies.drain(..) {
            encoder.reply(reply, &mut out);
        }
        if started {
            for cmd in [
                OutboundCommand::Audio(vec![0x1234; 160]),
                OutboundCommand::Mark("vx-1".into()),
                OutboundCommand::Clear,
            ] {
                encoder.encode(&cmd, &mut out);
            }
        }
        while let Some(_ev) = encoder.take_event() {}
        check_outbound(&mut out, text);
    }
    encoder.closing(false, &mut out);
    check_outbound(&mut out, text);
}

fn check_outbound(out: &mut Vec<WireFrame>, text: TextFrames) {
    for frame in out.drain(..) {
        if let (WireFrame::Text(t), TextFrames::Json) = (&frame, text) {
            if let Err(e) = serde_json::from_str::<serde_json::Value>(t) {
                panic!("outbound text frame is not JSON ({e}): {t}");
            }
        }
    }
}

/// One connection of the provider `name`, configured with one of `variants` (each a
/// `[telephony.<name>]` body; `""` is its defaults). The variant is the input's length modulo
/// their count: deterministic for a crash file, and every mutation of a length tries the
/// same frames under another configuration.
pub fn ws(name: &'static str, variants: &[&'static str], data: &[u8], text: TextFrames) {
    // Built once per process and variant: building is the slow part and holds no per-call
    // state (each connection gets its own codec).
    thread_local! {
        static PROVIDERS: RefCell<Vec<(&'static str, Arc<dyn Provider>)>> =
            const { RefCell::new(Vec::new()) };
    }
    let toml = variants[data.len() % variants.len()];
    let provider = PROVIDERS.with(|p| {
        let mut p = p.borrow_mut();
        if let Some((_, prov)) = p.iter().find(|(k, _)| *k == toml) {
            return prov.clone();
        }
        let prov = provider(name, toml);
        p.push((toml, prov.clone()));
        prov
    });
    drive(&*provider, data, text);
}

/// `[bot]` sections of every Kore flavour the parsers behave differently under: v2 and v1,
/// sync and async (an async 2xx body is an acknowledgement, not a reply).
pub const KORE_SECTIONS: [&str; 4] = [
    concat!(
        "platform = \"kore_v2\"\nclient_id = \"cs-1\"\nclient_secret = \"s\"\n",
        "webhook_url = \"http://127.0.0.1:9/chatbot/v2/webhook/st-bot\"\n",
        "hangup_tasks = [\"Goodbye\"]\n"
    ),
    concat!(
        "platform = \"kore_v1\"\nclient_id = \"cs-1\"\nclient_secret = \"s\"\n",
        "webhook_url = \"http://127.0.0.1:9/chatbot/hooks/st-bot\"\n"
    ),
    concat!(
        "platform = \"kore_v2\"\nclient_id = \"cs-1\"\nclient_secret = \"s\"\n",
        "webhook_url = \"http://127.0.0.1:9/chatbot/v2/webhook/st-bot\"\n",
        "mode = \"async\"\ncallback_secret = \"0123456789abcdef0123456789abcdef\"\n",
        "hangup_tasks = [\"Goodbye\"]\n"
    ),
    concat!(
        "platform = \"kore_v1\"\nclient_id = \"cs-1\"\nclient_secret = \"s\"\n",
        "webhook_url = \"http://127.0.0.1:9/chatbot/hooks/st-bot\"\n",
        "mode = \"async\"\ncallback_secret = \"0123456789abcdef0123456789abcdef\"\n"
    ),
];

/// The Kore client configured by `section` (one of [`KORE_SECTIONS`]).
pub fn kore_client(section: &str) -> voxhook::bot::kore::KoreClient {
    match voxhook::bot::BotSettings::from_toml("bot", section) {
        Ok(voxhook::bot::BotSettings::Kore(s)) => {
            voxhook::bot::kore::KoreClient::new(s).expect("fuzz Kore client")
        }
        other => panic!("fuzz Kore settings: {other:?}"),
    }
}

/// What must hold for every reply a bot parser hands the call: a menu option has a title
/// to speak and a payload to send (the turn logic indexes both), and speech is never an
/// empty string (`None` says "nothing to say").
pub fn check_replies(replies: &[voxhook::bot::BotReply]) {
    for r in replies {
        assert!(r.text.as_deref() != Some(""), "empty text in {r:?}");
        for o in &r.options {
            assert!(!o.title.is_empty(), "option without a title in {r:?}");
        }
    }
}
