//! The token ids of a request body's prompt, as the emulator and the LB hash them into prefix
//! blocks (`sim::engine::PromptContent::from_token_ids`): a completions `prompt` given as ids is
//! taken as is (what `live run` sends); text, which neither tokenises, counts one pseudo-id per
//! whitespace-separated word (a hash of the word), the same unit both use to count prompt tokens.
//! Chat bodies concatenate their messages' contents in order. It never fails: a body without a
//! readable prompt has no ids (and so nothing to share).

use serde_json::Value;

/// The prompt's ids of a completions (`prompt`) or chat (`messages`) body.
pub fn prompt_token_ids(body: &Value) -> Vec<u32> {
    let mut ids = Vec::new();
    if let Some(p) = body.get("prompt") {
        push_ids(p, &mut ids);
    }
    if let Some(Value::Array(messages)) = body.get("messages") {
        for m in messages {
            if let Some(c) = m.get("content") {
                push_ids(c, &mut ids);
            }
        }
    }
    ids
}

fn push_ids(v: &Value, out: &mut Vec<u32>) {
    match v {
        Value::String(s) => out.extend(s.split_whitespace().map(word_id)),
        Value::Array(items) if items.iter().all(Value::is_number) => {
            out.extend(
                items.iter().map(|x| x.as_u64().map_or(u32::MAX, |n| u32::try_from(n).unwrap_or(u32::MAX))),
            );
        }
        Value::Array(items) => items.iter().for_each(|x| push_ids(x, out)),
        Value::Object(part) => {
            if let Some(t) = part.get("text") {
                push_ids(t, out);
            }
        }
        _ => {}
    }
}

/// FNV-1a of a word, as a pseudo token id.
fn word_id(w: &str) -> u32 {
    w.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn id_prompts_are_taken_as_is_and_text_gives_one_id_per_word() {
        assert_eq!(prompt_token_ids(&json!({"prompt": [5, 6, 7]})), vec![5, 6, 7]);
        let text = prompt_token_ids(&json!({"prompt": "a b  a"}));
        assert_eq!(text.len(), 3);
        assert_eq!(text[0], text[2]);
        assert_ne!(text[0], text[1]);
        let chat = json!({"messages": [{"content": "a b"}, {"content": [{"type": "text", "text": "a"}]}]});
        assert_eq!(prompt_token_ids(&chat), text);
        assert!(prompt_token_ids(&json!({"model": "m"})).is_empty());
    }
}
