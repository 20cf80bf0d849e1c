//! The prompt clean-up the diffusers Wan pipelines apply before tokenizing (`prompt_clean` in
//! `diffusers/pipelines/wan/pipeline_wan.py`): `ftfy.fix_text`, `html.unescape` twice, strip, collapse every run
//! of whitespace to one space, strip.
//!
//! `ftfy.fix_text` (ftfy 6.3.1, default settings) is reproduced step for step on each line, repeated until the
//! text stops changing: HTML entity decoding (off for the rest of the text once a line holds a `<`), C1 controls
//! read as Windows-1252, Latin ligatures split, fullwidth/halfwidth forms to standard width, curly quotes
//! straightened, line breaks unified, terminal escapes and invisible control characters removed, NFC.
//!
//! Not covered: ftfy's mojibake repair (`fix_encoding`: text that was UTF-8 decoded as Latin-1/Windows-1252 and
//! similar, e.g. `cafÃ©`), which needs ftfy's statistical "badness" heuristic; such prompts are passed through
//! unrepaired. ftfy's surrogate repair has nothing to do on Rust strings, which cannot hold surrogates. Unicode
//! normalisation uses the tables of the `tokenizers` crate, whose Unicode version may differ from Python's on
//! characters assigned after Unicode 9.

use std::sync::LazyLock;

use regex::Regex;
use tokenizers::NormalizedString;

use crate::html;

/// ftfy's `ANSI_RE`: terminal escape sequences such as colour codes.
static ANSI_ESCAPE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\x1b\[((?:\d|;)*)([a-zA-Z])").expect("static regex"));

/// Cleans a prompt exactly as the diffusers Wan pipelines do before tokenizing it.
pub fn prompt_clean(text: &str) -> String {
    let fixed = fix_text(text);
    let unescaped = html::unescape(&html::unescape(&fixed));
    whitespace_clean(py_strip(&unescaped))
}

/// `re.sub(r"\s+", " ", text).strip()` (the `regex` module's `\s` is Unicode `White_Space`).
fn whitespace_clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    py_strip(&out).to_string()
}

/// Python's `str.strip()`: Unicode `White_Space` plus the information separators U+001C..U+001F.
fn py_strip(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || ('\u{1C}'..='\u{1F}').contains(&c))
}

/// `ftfy.fix_text` with default settings, without mojibake repair (see the module docs).
fn fix_text(text: &str) -> String {
    let mut unescape_html = true;
    let mut out = String::with_capacity(text.len());
    for segment in text.split_inclusive('\n') {
        if unescape_html && segment.contains('<') {
            unescape_html = false;
        }
        out.push_str(&fix_segment(segment, unescape_html));
    }
    out
}

/// `ftfy.fix_and_explain` on one line: every fixer in ftfy's order, repeated until nothing changes.
fn fix_segment(segment: &str, unescape_html: bool) -> String {
    let mut text = segment.to_string();
    loop {
        let original = text.clone();
        if unescape_html {
            text = html::ftfy_unescape(&text);
        }
        text = text.chars().map(html::c1_as_windows_1252).collect();
        text = fix_latin_ligatures(&text);
        text = fix_character_width(&text);
        text = uncurl_quotes(&text);
        text = fix_line_breaks(&text);
        text = ANSI_ESCAPE.replace_all(&text, "").into_owned();
        text.retain(|c| !is_removed_control(c));
        text = normalize(&text, false);
        if text == original {
            return text;
        }
    }
}

/// ftfy's `LIGATURES`: Latin typographic ligatures and legacy digraphs -> their letters.
fn fix_latin_ligatures(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let replacement = match c {
            'Ĳ' => "IJ",
            'ĳ' => "ij",
            'ŉ' => "ʼn",
            'Ǳ' => "DZ",
            'ǲ' => "Dz",
            'ǳ' => "dz",
            'Ǆ' => "DŽ",
            'ǅ' => "Dž",
            'ǆ' => "dž",
            'Ǉ' => "LJ",
            'ǈ' => "Lj",
            'ǉ' => "lj",
            'Ǌ' => "NJ",
            'ǋ' => "Nj",
            'ǌ' => "nj",
            'ﬀ' => "ff",
            'ﬁ' => "fi",
            'ﬂ' => "fl",
            'ﬃ' => "ffi",
            'ﬄ' => "ffl",
            'ﬅ' => "ſt",
            'ﬆ' => "st",
            _ => {
                out.push(c);
                continue;
            }
        };
        out.push_str(replacement);
    }
    out
}

/// ftfy's `fix_character_width`: U+3000 to a space, and every character in U+FF01..U+FFEF to its NFKC form.
fn fix_character_width(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{3000}' => out.push(' '),
            '\u{FF01}'..='\u{FFEF}' => out.push_str(&normalize(c.encode_utf8(&mut [0; 4]), true)),
            _ => out.push(c),
        }
    }
    out
}

/// ftfy's `uncurl_quotes`: U+201C..U+201F to `"`, U+02BC and U+2018..U+201B to `'`.
fn uncurl_quotes(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{201C}'..='\u{201F}' => '"',
            '\u{02BC}' | '\u{2018}'..='\u{201B}' => '\'',
            _ => c,
        })
        .collect()
}

/// ftfy's `fix_line_breaks`: CRLF, CR, U+2028, U+2029 and U+0085 to `\n`.
fn fix_line_breaks(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n")
}

/// ftfy's `CONTROL_CHARS`: control characters with no visible effect that `remove_control_chars` deletes.
fn is_removed_control(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{B}' | '\u{E}'..='\u{1F}' | '\u{7F}' | '\u{206A}'..='\u{206F}' | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFC}')
}

/// NFC (or NFKC) normalisation.
fn normalize(text: &str, compatibility: bool) -> String {
    let mut normalized = NormalizedString::from(text);
    if compatibility {
        normalized.nfkc();
    } else {
        normalized.nfc();
    }
    normalized.get().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Case {
        input: String,
        expected: String,
    }

    #[derive(serde::Deserialize)]
    struct Cases {
        cases: Vec<Case>,
    }

    /// Reference: diffusers 0.42.1 `pipeline_wan.prompt_clean` with ftfy 6.3.1 installed, on Python 3.11
    /// (`fixtures/text/prompt_clean.json`, written by `tools/fixtures/text.py`). Exact string equality.
    #[test]
    fn matches_diffusers_prompt_clean() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/text/prompt_clean.json"
        );
        let text = std::fs::read_to_string(path).expect("read prompt_clean.json");
        let cases: Cases = serde_json::from_str(&text).expect("parse prompt_clean.json");
        assert!(cases.cases.len() > 20);
        let mut failures = Vec::new();
        for case in &cases.cases {
            let got = prompt_clean(&case.input);
            if got != case.expected {
                failures.push(format!(
                    "input {:?}\n  expected {:?}\n  got      {:?}",
                    case.input, case.expected, got
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} mismatches:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn collapses_whitespace_like_python() {
        assert_eq!(whitespace_clean("\u{1C} a \t\n b\u{3000}c \u{1F}"), "a b c");
        assert_eq!(prompt_clean(""), "");
        assert_eq!(prompt_clean(" \n\t "), "");
    }
}
