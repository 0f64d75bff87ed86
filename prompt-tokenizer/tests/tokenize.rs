//! The test tokenizer trained offline, loaded as a model directory would be: completions get
//! the BOS, chat goes through the ChatML template, and encoding piece by piece (with the cache)
//! gives exactly the ids of encoding the whole text.

use prompt_tokenizer::train::{write_test_tokenizer, SPECIAL_TOKENS};
use prompt_tokenizer::{find_in_hf_cache, PromptTokenizer};
use serde_json::json;

/// The test tokenizer in a temporary directory, removed when the guard drops.
fn dir(name: &str) -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix(&format!("prompt-tokenizer-{name}-"))
        .tempdir()
        .unwrap();
    write_test_tokenizer(d.path()).unwrap();
    d
}

fn system_prompt() -> String {
    "You are a helpful assistant. Answer the question briefly and cite your sources. ".repeat(12)
}

#[test]
fn completions_get_the_bos_and_chat_goes_through_the_template() {
    let tmp = dir("basic");
    let d = tmp.path();
    let t = PromptTokenizer::load(d).unwrap();
    assert!(t.has_chat_template());
    let ids = t.tokenize_completion("what is the model cache?").unwrap();
    assert_eq!(ids[0], 0, "{} first", SPECIAL_TOKENS[0]);
    assert!(ids.len() > 3 && ids.len() < 20, "{ids:?}");
    let messages =
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why?"}]);
    let text = t.render_chat(&messages).unwrap();
    assert_eq!(
        text,
        "<|begin_of_text|><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n"
    );
    let ids = t.tokenize_chat(&messages).unwrap();
    assert_eq!(
        &ids[..2],
        &[0, 2],
        "BOS then <|im_start|>, written by the template only"
    );
    assert!(t.tokenize_chat(&json!({"not": "an array"})).is_err());
}

#[test]
fn piecewise_encoding_with_the_cache_equals_whole_encoding() {
    let tmp = dir("pieces");
    let d = tmp.path();
    let t = PromptTokenizer::load(d).unwrap();
    assert!(
        t.caches_pieces(),
        "the probe found piecewise encoding exact"
    );
    let whole = tokenizers::Tokenizer::from_file(d.join("tokenizer.json")).unwrap();
    for q in [
        "Why is the sky blue?",
        "Explain routing  in two lines.\n\n",
        "translate: bonjour",
    ] {
        let messages =
            json!([{"role": "system", "content": system_prompt()}, {"role": "user", "content": q}]);
        let text = t.render_chat(&messages).unwrap();
        let expected = whole
            .encode(text.as_str(), false)
            .unwrap()
            .get_ids()
            .to_vec();
        // Twice: the second time the system prompt comes from the cache.
        assert_eq!(t.tokenize_chat(&messages).unwrap(), expected, "{q}");
        assert_eq!(
            t.tokenize_chat(&messages).unwrap(),
            expected,
            "{q} (cached)"
        );
    }
    // Two requests sharing the system prompt share their leading ids (what prefix caching needs).
    let a = t.tokenize_chat(&json!([{"role": "system", "content": system_prompt()}, {"role": "user", "content": "one"}])).unwrap();
    let b = t.tokenize_chat(&json!([{"role": "system", "content": system_prompt()}, {"role": "user", "content": "two"}])).unwrap();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    assert!(common > 100, "{common}");
}

#[test]
fn a_model_is_found_in_the_local_hugging_face_cache() {
    let tmp = tempfile::Builder::new()
        .prefix("prompt-tokenizer-hub-")
        .tempdir()
        .unwrap();
    let hub = tmp.path();
    let snap = hub.join("models--acme--tiny-chat/snapshots/abc123");
    write_test_tokenizer(&snap).unwrap();
    std::fs::create_dir_all(hub.join("models--acme--tiny-chat/refs")).unwrap();
    std::fs::write(hub.join("models--acme--tiny-chat/refs/main"), "abc123\n").unwrap();
    // SAFETY-free: tests in this binary do not read HF_HUB_CACHE concurrently.
    std::env::set_var("HF_HUB_CACHE", hub);
    assert_eq!(find_in_hf_cache("acme/tiny-chat"), Some(snap.clone()));
    assert_eq!(find_in_hf_cache("acme/other"), None);
    assert!(PromptTokenizer::load(&snap).is_ok());
    assert!(PromptTokenizer::load(&hub.join("nothing")).is_err());
}

#[test]
fn long_pieces_in_chunks_and_completions_equal_whole_encoding() {
    let tmp = dir("chunks");
    let d = tmp.path();
    let t = PromptTokenizer::load(d).unwrap();
    assert!(t.caches_chunks(), "the probes found chunked encoding exact");
    assert!(
        t.encodes_words(),
        "the probes found word-by-word encoding exact"
    );
    let whole = tokenizers::Tokenizer::from_file(d.join("tokenizer.json")).unwrap();
    for round in 0..20u64 {
        let text = mixed_text(7 + round, 200 + 40 * round as usize);
        let expected = whole
            .encode(text.as_str(), true)
            .unwrap()
            .get_ids()
            .to_vec();
        assert_eq!(
            t.tokenize_completion(&text).unwrap(),
            expected,
            "round {round}"
        );
        assert_eq!(
            t.tokenize_completion(&text).unwrap(),
            expected,
            "round {round}, cached"
        );
        let messages = json!([{"role": "system", "content": text.clone()}, {"role": "user", "content": "why?"}]);
        let rendered = t.render_chat(&messages).unwrap();
        let expected = whole
            .encode(rendered.as_str(), false)
            .unwrap()
            .get_ids()
            .to_vec();
        assert_eq!(
            t.tokenize_chat(&messages).unwrap(),
            expected,
            "round {round}, chat"
        );
    }
}

/// Pseudo-random text of about `words` words: in the vocabulary and not, punctuation, digits,
/// odd spacing.
fn mixed_text(seed: u64, words: usize) -> String {
    let parts = [
        "account", "billing", "zebra", "Quux", "42", ",", ".", "  ", "\n", "it's", "(x)", "naïve",
        "🚀", "the", "routing",
    ];
    let mut x = seed | 1;
    let mut text = String::new();
    for _ in 0..words {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x % 5 != 0 {
            text.push(' ');
        }
        text.push_str(parts[(x % parts.len() as u64) as usize]);
    }
    text
}

#[test]
fn encoding_stretch_by_stretch_gives_prefixes_of_the_whole_and_stops_when_told() {
    let tmp = dir("stretches");
    let d = tmp.path();
    let t = PromptTokenizer::load(d).unwrap();
    assert!(t.encodes_in_stretches(), "the probe found stretches exact");
    let whole = tokenizers::Tokenizer::from_file(d.join("tokenizer.json")).unwrap();
    for round in 0..20u64 {
        let text = mixed_text(round * 7919 + 3, 300 + 20 * round as usize);
        let expected = whole
            .encode(text.as_str(), true)
            .unwrap()
            .get_ids()
            .to_vec();
        // Every stretch handed out is a prefix of the whole encoding; stopping after the
        // third leaves a prefix and says so.
        let mut asked = 0;
        let mut out = Vec::new();
        let done = t
            .tokenize_completion_while(&text, &mut out, &mut |ids| {
                assert_eq!(ids, &expected[..ids.len()], "round {round}: a prefix");
                asked += 1;
                asked < 3
            })
            .unwrap();
        assert!(!done, "round {round}: stopped");
        assert_eq!(asked, 3);
        assert!(
            out.len() < expected.len() / 2,
            "round {round}: {} of {}",
            out.len(),
            expected.len()
        );
        // A stopped chunk was not cached half-done: the full encoding is still exact, twice.
        for pass in 0..2 {
            let mut all = Vec::new();
            assert!(t
                .tokenize_completion_while(&text, &mut all, &mut |_| true)
                .unwrap());
            assert_eq!(all, expected, "round {round}, pass {pass}");
        }
        // Chat: rendered, then stretch by stretch.
        let messages = json!([{"role": "system", "content": text.clone()}, {"role": "user", "content": "why?"}]);
        let rendered = t.render_chat(&messages).unwrap();
        let expected = whole
            .encode(rendered.as_str(), false)
            .unwrap()
            .get_ids()
            .to_vec();
        let mut out = Vec::new();
        assert!(!t.tokenize_rendered_while(&rendered, &mut out, &mut |ids| ids.len() < 20));
        assert_eq!(out, expected[..out.len()], "round {round}: chat prefix");
        let mut all = Vec::new();
        assert!(t.tokenize_rendered_while(&rendered, &mut all, &mut |_| true));
        assert_eq!(all, expected, "round {round}: chat");
    }
}
