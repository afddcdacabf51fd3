//! AudioSocket decode and encode against the wire examples in `tests/fixtures/audiosocket/`
//! (hex, `#` comments; shapes from Asterisk's protocol page and `res_audiosocket.c`), the
//! stream cut into chunks anywhere, faults, and the encoder's pacing on a clock of its own.

use super::*;
use crate::telephony::testing::Proto;

macro_rules! fixture {
    ($name:literal) => {
        hex(include_str!(concat!(
            "../../../tests/fixtures/audiosocket/",
            $name
        )))
    };
}

/// The bytes of a hex fixture (whitespace between bytes, `#` lines skipped).
fn hex(text: &str) -> Vec<u8> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

const ID: &str = "40325ec2-5efd-4bd3-805f-53576e581d13";

fn provider(toml: &str) -> AudioSocket {
    match crate::telephony::parse_section("audiosocket", toml).unwrap() {
        crate::telephony::ProviderSettings::AudioSocket(settings) => AudioSocket { settings },
        other => panic!("{other:?}"),
    }
}

fn proto() -> Proto {
    Proto::new(provider("enabled = true").codec())
}

/// A started codec.
fn started() -> Proto {
    let mut p = proto();
    p.binary(&fixture!("uuid.hex")).unwrap();
    p
}

fn audio(pcm: &[i16]) -> OutboundCommand {
    OutboundCommand::Audio(pcm.to_vec())
}

#[test]
fn the_documented_frames_decode() {
    let mut p = proto();
    let evs = p.binary(&fixture!("uuid.hex")).unwrap();
    let [InboundEvent::Start(start)] = &evs[..] else {
        panic!("{evs:?}");
    };
    assert_eq!((start.call_id.as_str(), start.stream_id.as_str()), (ID, ID));
    assert_eq!((start.inbound_rate, start.outbound_rate), (8_000, 8_000));
    assert_eq!((start.caller.as_deref(), start.custom.len()), (None, 0));

    assert_eq!(
        p.binary(&fixture!("audio.hex")).unwrap(),
        [InboundEvent::Audio(vec![1, -1])]
    );
    let evs = p.binary(&fixture!("audio_20ms.hex")).unwrap();
    let [InboundEvent::Audio(pcm)] = &evs[..] else {
        panic!("{evs:?}");
    };
    assert_eq!(pcm.len(), 160);
    assert_eq!(&pcm[..3], &[0, 2709, 5099]);
    assert_eq!(
        p.binary(&fixture!("dtmf.hex")).unwrap(),
        [InboundEvent::Dtmf('7')]
    );
    assert_eq!(
        p.binary(&fixture!("error.hex")).unwrap(),
        [InboundEvent::Stop]
    );
    assert_eq!(
        p.binary(&fixture!("hangup.hex")).unwrap(),
        [InboundEvent::Stop]
    );
}

#[test]
fn a_stream_cut_anywhere_decodes_the_same() {
    let stream: Vec<u8> = [
        fixture!("uuid.hex"),
        fixture!("audio_20ms.hex"),
        fixture!("dtmf.hex"),
        fixture!("audio.hex"),
        fixture!("hangup.hex"),
    ]
    .concat();
    let whole = proto().binary(&stream).unwrap();
    assert_eq!(whole.len(), 5);
    assert!(matches!(whole[0], InboundEvent::Start(_)));
    assert_eq!(whole[4], InboundEvent::Stop);
    for size in [1, 2, 3, 7, 64, 322, 323, 324] {
        let mut p = proto();
        let mut got = Vec::new();
        for chunk in stream.chunks(size) {
            got.extend(p.binary(chunk).unwrap());
        }
        assert_eq!(got, whole, "chunks of {size}");
    }
}

#[test]
fn faults_end_the_call_and_unknown_kinds_are_ignored() {
    let err = |bytes: &[u8]| started().binary(bytes).unwrap_err().to_string();
    // The limit is checked at the header, before the payload arrives.
    assert_eq!(
        err(&[0x10, 0x20, 0x01]),
        "message of 8193 bytes exceeds the limit of 8192"
    );
    assert!(err(&[0x10, 0x00, 0x03, 1, 2, 3]).contains("not whole 16-bit samples"));
    assert!(err(&[0x01, 0x00, 0x02, 1, 2]).contains("UUID of 2 bytes"));
    assert!(err(&fixture!("uuid.hex")).contains("a second UUID"));
    assert!(err(&[0x03, 0x00, 0x01, b'x']).contains("dtmf digit"));
    assert!(err(&[0x03, 0x00, 0x02, b'1', b'2']).contains("DTMF payload of 2 bytes"));
    assert!(err(&[0x12, 0x00, 0x02, 0, 0]).contains("16000 Hz"));
    assert!(started().text("hello").is_err());

    let mut p = started();
    assert!(p.binary(&[0x05, 0x00, 0x01, 9]).unwrap().is_empty());
    assert!(
        p.binary(&[0x10, 0x00, 0x00]).unwrap().is_empty(),
        "empty audio"
    );
    assert_eq!(
        p.binary(&fixture!("audio.hex")).unwrap(),
        [InboundEvent::Audio(vec![1, -1])]
    );
}

#[test]
fn audio_before_the_uuid_is_passed_on_for_the_call_to_hold() {
    let mut p = proto();
    assert_eq!(
        p.binary(&fixture!("audio.hex")).unwrap(),
        [InboundEvent::Audio(vec![1, -1])]
    );
    assert!(matches!(
        p.binary(&fixture!("uuid.hex")).unwrap()[..],
        [InboundEvent::Start(_)]
    ));
}

/// A started encoder holding at most `max_held` frames.
fn encoder(max_held: usize) -> AudioSocketEncoder {
    let mut e = AudioSocketEncoder::new(max_held);
    let mut p = proto();
    let evs = p.binary(&fixture!("uuid.hex")).unwrap();
    let [InboundEvent::Start(start)] = &evs[..] else {
        panic!("{evs:?}");
    };
    e.started(start);
    e
}

fn send(e: &mut AudioSocketEncoder, cmd: &OutboundCommand) {
    let mut out = Vec::new();
    e.encode(cmd, &mut out);
    assert!(out.is_empty(), "held, never sent at once");
}

/// What the encoder releases at `now`, and the marks it reports.
fn release(e: &mut AudioSocketEncoder, now: Instant) -> (Vec<Vec<u8>>, Vec<String>) {
    let mut out = Vec::new();
    e.release(now, &mut out);
    let frames = out
        .into_iter()
        .map(|f| match f {
            WireFrame::Binary(b) => b,
            other => panic!("{other:?}"),
        })
        .collect();
    let mut marks = Vec::new();
    while let Some(ev) = e.take_event() {
        match ev {
            InboundEvent::Mark(m) => marks.push(m),
            other => panic!("{other:?}"),
        }
    }
    (frames, marks)
}

#[test]
fn nothing_goes_out_before_the_uuid() {
    let mut p = proto();
    assert!(p.encode(&audio(&[1; 160])).is_empty());
    assert_eq!(p.0.encoder.next_due(), None);
}

#[test]
fn output_is_paced_one_frame_per_20_ms_and_marks_follow_the_played_audio() {
    // A clock of its own: times are offsets from t0, never the wall clock.
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let mut e = encoder(500);
    for i in 0..3 {
        send(&mut e, &audio(&[i; 160]));
    }
    send(&mut e, &OutboundCommand::Mark("vx-1".into()));
    assert_eq!(e.due(t0), Some(t0));
    let (frames, marks) = release(&mut e, t0);
    assert_eq!(frames.len(), 1, "one frame at a time");
    assert_eq!(frames[0].len(), 323);
    assert_eq!(&frames[0][..5], &[0x10, 0x01, 0x40, 0, 0]);
    assert!(marks.is_empty());
    assert_eq!(e.due(t0), Some(ms(20)));
    // Early: nothing. A late timer (5 ms) sends the next frame without drifting the clock.
    assert!(release(&mut e, ms(10)).0.is_empty());
    let (frames, _) = release(&mut e, ms(25));
    assert_eq!(frames[0][3..5], [1, 0]);
    assert_eq!(e.due(ms(25)), Some(ms(40)));
    let (frames, marks) = release(&mut e, ms(40));
    assert_eq!(
        (frames.len(), marks.len()),
        (1, 0),
        "the mark waits for the frame to play"
    );
    assert_eq!(e.due(ms(40)), Some(ms(60)));
    let (frames, marks) = release(&mut e, ms(60));
    assert_eq!((frames.len(), marks), (0, vec!["vx-1".to_string()]));
    assert_eq!(e.due(ms(60)), None);

    // After a quiet spell a new run starts at once.
    let t1 = ms(1_000);
    send(&mut e, &audio(&[7; 160]));
    assert_eq!(e.due(t1), Some(t1));
    assert_eq!(release(&mut e, t1).0.len(), 1);

    // A mark with nothing before it is reported once the line has played out.
    send(&mut e, &OutboundCommand::Mark("vx-2".into()));
    assert!(release(&mut e, t1).1.is_empty());
    assert_eq!(release(&mut e, t1 + FRAME).1, vec!["vx-2".to_string()]);
}

#[test]
fn a_clear_drops_what_is_held_and_its_marks() {
    let t0 = Instant::now();
    let mut e = encoder(500);
    for _ in 0..10 {
        send(&mut e, &audio(&[3; 160]));
    }
    send(&mut e, &OutboundCommand::Mark("vx-1".into()));
    assert_eq!(release(&mut e, t0).0.len(), 1);
    send(&mut e, &OutboundCommand::Clear);
    assert_eq!(e.due(t0), None, "nothing left to send");
    assert_eq!(release(&mut e, t0 + 5 * FRAME), (vec![], vec![]));
    // The next message waits for the frame on the line, then plays.
    send(&mut e, &audio(&[4; 160]));
    assert_eq!(e.due(t0), Some(t0 + FRAME));
}

#[test]
fn past_max_held_frames_the_oldest_audio_goes() {
    let mut e = encoder(10);
    for i in 0..12 {
        send(&mut e, &audio(&[i; 160]));
    }
    send(&mut e, &audio(&[]));
    let mut sent = Vec::new();
    let mut now = Instant::now();
    while e.due(now).is_some() {
        sent.extend(release(&mut e, now).0);
        now += FRAME;
    }
    let firsts: Vec<u8> = sent.iter().map(|f| f[3]).collect();
    assert_eq!(
        firsts,
        (2..12).collect::<Vec<u8>>(),
        "0 and 1 dropped, empty skipped"
    );
}

#[test]
fn the_end_of_a_call_is_a_hang_up_frame() {
    let mut p = started();
    let mut out = Vec::new();
    p.0.encoder.closing(false, &mut out);
    assert_eq!(out, [WireFrame::Binary(fixture!("hangup.hex"))]);
}

#[test]
fn slin_frames_round_trip() {
    let pcm: Vec<i16> = (0..160).map(|i| (i * 409 - 32_768) as i16).collect();
    let frame = wire::slin_frame(&pcm);
    let (f, used) = wire::next_frame(&frame, 320).unwrap().unwrap();
    assert_eq!((f.kind, used), (wire::KIND_SLIN, 323));
    let mut back = Vec::new();
    wire::decode_slin(f.payload, &mut back).unwrap();
    assert_eq!(back, pcm);
    assert_eq!(wire::next_frame(&frame[..200], 320).unwrap(), None);
    assert_eq!(wire::error_meaning(Some(0x06)), "frame forwarding error");
}

#[test]
fn it_is_a_tcp_listener_with_its_uuid_timeout() {
    let p = provider("listen = \"127.0.0.1:19092\"\nuuid_timeout_ms = 750");
    assert_eq!(p.tcp_listen(), Some("127.0.0.1:19092".parse().unwrap()));
    assert_eq!(p.start_timeout(), Duration::from_millis(750));
    assert_eq!(p.limits().max_message_bytes, 8 * 1024);
}

#[test]
fn arbitrary_bytes_in_arbitrary_chunks_never_panic() {
    // xorshift: deterministic garbage, frames of every kind and length, cut anywhere.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..500 {
        let mut p = proto();
        for _ in 0..20 {
            let len = (next() % 64) as usize;
            let mut chunk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Mostly small lengths, so whole frames of many kinds get decoded.
            if let Some(b) = chunk.get_mut(1) {
                *b = 0;
            }
            if p.binary(&chunk).is_err() {
                break;
            }
        }
    }
}
