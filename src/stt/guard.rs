//! Invented text never reaches the bot. Whisper-family recognisers, fed telephone audio,
//! sometimes loop ("five five" came out as "5" twenty-nine times) or repeat a short utterance
//! whole ("Press 4 for the previous message. Press 4 for the previous message."). This module
//! owns the rule that trims such loops from any backend's final transcript, and drops text
//! that still has more words than the audio could hold.

/// Longer repeated phrases than this (in words) are not looked for.
const MAX_PHRASE: usize = 8;
/// A phrase of at least this many words said twice in a row is a repeat: kept once.
const LONG_PHRASE: usize = 3;
/// Shorter phrases ("no", "5", "thank you") are a loop from this many copies in a row, when
/// the text also has more words than the audio could hold ("no no no" is real speech).
const SHORT_LOOP: usize = 4;
/// Fastest plausible speech: words per second of audio, plus a margin for very short audio.
const MAX_WORDS_PER_SEC: f64 = 5.0;
const WORDS_MARGIN: f64 = 3.0;

/// What the guard did to a transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing invented found.
    Keep,
    /// Repeats removed: the text to use instead.
    Trimmed(String),
    /// More words than the audio could hold even after trimming: nothing was said.
    Dropped,
}

/// Judges `text`, recognised from `audio_ms` of audio (0: unknown, no rate check).
pub fn check(text: &str, audio_ms: u64) -> Verdict {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() < 2 {
        return Verdict::Keep;
    }
    let max_words = if audio_ms > 0 {
        audio_ms as f64 / 1000.0 * MAX_WORDS_PER_SEC + WORDS_MARGIN
    } else {
        f64::INFINITY
    };
    let too_many = |n: usize| n as f64 > max_words;
    let mut kept = collapse(&words, |n, copies| n >= LONG_PHRASE && copies >= 2);
    if too_many(kept.len()) {
        kept = collapse(&kept, |_, copies| copies >= SHORT_LOOP);
    }
    if too_many(kept.len()) {
        return Verdict::Dropped;
    }
    if kept.len() == words.len() {
        Verdict::Keep
    } else {
        Verdict::Trimmed(kept.join(" "))
    }
}

/// `true` unless `phrase` is a shorter phrase repeated ("a b a b").
fn primitive(phrase: &[String]) -> bool {
    let n = phrase.len();
    !(1..n).any(|p| n.is_multiple_of(p) && (p..n).all(|j| phrase[j] == phrase[j % p]))
}

/// Keeps one copy of each run of a phrase repeated back to back, where `is_loop(phrase
/// words, copies)` says so. Words compare without case and trailing punctuation.
fn collapse<'a>(words: &[&'a str], is_loop: impl Fn(usize, usize) -> bool) -> Vec<&'a str> {
    let key = |w: &str| {
        w.trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase()
    };
    let keys: Vec<String> = words.iter().map(|w| key(w)).collect();
    let mut out = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        // The shortest phrase starting here that repeats as a loop, and how often; a phrase
        // that is itself a loop of a shorter one ("5 5 5") is that shorter one's business.
        let mut best: Option<(usize, usize)> = None;
        for n in 1..=MAX_PHRASE.min((words.len() - i) / 2) {
            if !primitive(&keys[i..i + n]) {
                continue;
            }
            let mut copies = 1;
            while i + (copies + 1) * n <= words.len()
                && keys[i..i + n] == keys[i + copies * n..i + (copies + 1) * n]
            {
                copies += 1;
            }
            if is_loop(n, copies) {
                best = Some((n, copies));
                break;
            }
        }
        match best {
            Some((n, copies)) => {
                out.extend_from_slice(&words[i..i + n]);
                i += n * copies;
            }
            None => {
                out.push(words[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digit_loop_is_trimmed_to_one_copy() {
        let looped = vec!["5"; 29].join(" ");
        assert_eq!(check(&looped, 1_100), Verdict::Trimmed("5".into()));
    }

    #[test]
    fn a_sentence_said_twice_is_kept_once() {
        let text = "Press 4 for the previous message. Press 4 for the previous message.";
        assert_eq!(
            check(text, 2_600),
            Verdict::Trimmed("Press 4 for the previous message.".into())
        );
    }

    #[test]
    fn real_repetition_and_digit_strings_are_kept() {
        for (text, ms) in [
            ("no no no", 1_000),
            ("5 5 5 5", 2_500),
            ("my card number is 4 4 4 4 1 2 3 4", 5_000),
            ("I would like to check my account balance.", 2_300),
            ("yes", 300),
        ] {
            assert_eq!(check(text, ms), Verdict::Keep, "{text}");
        }
    }

    #[test]
    fn text_the_audio_cannot_hold_is_dropped() {
        // Twenty distinct words from half a second of audio: invented.
        let text = (0..20)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(check(&text, 500), Verdict::Dropped);
        // Without a length, only repeats count.
        assert_eq!(check(&text, 0), Verdict::Keep);
    }

    #[test]
    fn a_loop_after_real_words_keeps_the_words() {
        let text = format!("four queen of clubs {}", vec!["clubs"; 30].join(" "));
        assert_eq!(
            check(&text, 1_800),
            Verdict::Trimmed("four queen of clubs".into())
        );
    }
}
