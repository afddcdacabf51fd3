//! When the caller is reading out digits: the two signals that lengthen the endpointing
//! hangover so "4 5 … 6 7" stays one turn. The bot's prompt asked for a number (a word of
//! `[audio] digit_prompt_words` in its last message), or a streaming STT's partial ends in a
//! digit. Pure text checks; the listener and the actor act on them.

/// Spoken digits and what recognisers write for them.
const DIGIT_WORDS: &[&str] = &[
    "zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];

/// `true` when `prompt` contains one of `words` (lower case; whole words or phrases).
pub fn asks_for_digits(prompt: &str, words: &[String]) -> bool {
    let text: String = prompt
        .chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                ' '
            }
        })
        .collect();
    let padded = format!(
        " {} ",
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    words.iter().any(|w| padded.contains(&format!(" {w} ")))
}

/// `true` when the last word of `text` is a digit, a number written in digits, or a spoken
/// digit.
pub fn ends_in_digit(text: &str) -> bool {
    let Some(last) = text.split_whitespace().next_back() else {
        return false;
    };
    let w = last.trim_matches(|c: char| !c.is_alphanumeric());
    (!w.is_empty() && w.chars().all(|c| c.is_ascii_digit()))
        || DIGIT_WORDS.contains(&w.to_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words() -> Vec<String> {
        ["number", "pin", "date of birth"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn prompts_that_ask_for_a_number_are_recognised() {
        for p in [
            "Please say your account number.",
            "Enter your PIN, followed by the hash key.",
            "What is your date of birth?",
        ] {
            assert!(asks_for_digits(p, &words()), "{p}");
        }
        for p in [
            "How can I help?",
            "Spinning up your request.",
            "Numbers are fun",
        ] {
            assert!(!asks_for_digits(p, &words()), "{p}");
        }
    }

    #[test]
    fn partials_ending_in_a_digit_are_recognised() {
        for t in ["my card is 4 5", "4521,", "it's five", "one two Oh"] {
            assert!(ends_in_digit(t), "{t}");
        }
        for t in ["", "my card", "five pounds", "4th"] {
            assert!(!ends_in_digit(t), "{t}");
        }
    }
}
