//! `make-test-tokenizer DIR`: writes the small offline test tokenizer (`tokenizer.json`,
//! `tokenizer_config.json` with a ChatML template) into DIR, for the demo, benchmarks and tests
//! that run the precise prefix cache without downloading a model.

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: make-test-tokenizer DIR");
        std::process::exit(2);
    };
    if let Err(e) = prompt_tokenizer::train::write_test_tokenizer(std::path::Path::new(&dir)) {
        eprintln!("make-test-tokenizer: {e}");
        std::process::exit(1);
    }
}
