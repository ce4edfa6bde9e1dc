//! The declared rule by which the emulator and the LB count the tokens of a *text* prompt (token
//! id prompts count exactly, one per id). Neither loads a tokenizer, so they count pre-tokens:
//! the pieces a Llama 3 / GPT-4-style byte-level BPE tokenizer splits text into before merging
//! (the `pat_str` of Llama 3's tokenizer.model / tiktoken's cl100k_base), simplified to:
//!
//! - a run of letters, with at most one non-letter, non-digit, non-space character just before it
//!   (`"hello"`, `" world"`, `"(see"`, `"'s"`): 1 token;
//! - a run of digits, in groups of at most 3 (`"2026"` is `"202"` + `"6"`): 1 token per group;
//! - a run of other non-space characters (punctuation, symbols, emoji): 1 token;
//! - whitespace: attached to the next piece, never a token of its own.
//!
//! Real BPE merges never span pre-tokens, so this is a lower bound on the real count: exact for
//! common English words and punctuation, low for rare words, which BPE splits further. Text
//! prompts therefore load an emulated engine slightly less than the same text on vLLM; clients
//! that need exact lengths send token ids (as `live run` does). This file does no I/O.

/// Tokens of `text` by the rule above.
pub fn count_text_tokens(text: &str) -> usize {
    let mut n = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        n += 1;
        if c.is_alphabetic() {
            while chars.next_if(|c| c.is_alphabetic()).is_some() {}
        } else if c.is_numeric() {
            let mut digits = 1;
            while digits < 3 && chars.next_if(|c| c.is_numeric()).is_some() {
                digits += 1;
            }
        } else if chars.peek().is_some_and(|c| c.is_alphabetic()) {
            // One symbol before letters joins them (`(see`, `'s`).
            while chars.next_if(|c| c.is_alphabetic()).is_some() {}
        } else {
            while chars.next_if(|c| !c.is_whitespace() && !c.is_alphanumeric()).is_some() {}
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn words_punctuation_and_numbers_count_as_a_bpe_pre_tokenizer_splits_them() {
        assert_eq!(count_text_tokens(""), 0);
        assert_eq!(count_text_tokens("one two three four"), 4);
        // "Hello" "," " world" "!" — whitespace-word counting said 2.
        assert_eq!(count_text_tokens("Hello, world!"), 4);
        // "it" "'s" " (see" " 202" "6" ")."
        assert_eq!(count_text_tokens("it's (see 2026)."), 6);
        assert_eq!(count_text_tokens("a\n\n  b\t"), 2);
    }

    proptest! {
        #[test]
        fn the_count_is_at_least_the_whitespace_words_and_at_most_the_characters(s in "\\PC{0,64}") {
            let n = count_text_tokens(&s);
            prop_assert!(n >= s.split_whitespace().count());
            prop_assert!(n <= s.chars().filter(|c| !c.is_whitespace()).count());
        }

        #[test]
        fn joining_with_a_space_adds_the_counts(a in "[a-z0-9,.!]{0,12}", b in "[a-z0-9,.!]{0,12}") {
            let joined = format!("{a} {b}");
            let sum = count_text_tokens(&a) + count_text_tokens(&b);
            // A symbol ending `a` followed by letters starting `b` still counts apart: the
            // space separates them.
            prop_assert_eq!(count_text_tokens(&joined), sum);
        }
    }
}
