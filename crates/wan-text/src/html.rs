//! HTML character references, decoded the two ways the reference prompt clean-up decodes them: Python's
//! `html.unescape` (lenient, HTML5 rules, including entities without a semicolon such as `&amp`) and ftfy's
//! `unescape_html` (only `&name;` and `&#...;` forms, plus upper-cased Latin entities such as `&EACUTE;`).
//!
//! The entity table is Python's `html.entities.html5`, written to `html5_entities.tsv` by
//! `tools/fixtures/text.py`.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// `html.entities.html5`: entity name (with its `;` where the name has one) -> replacement text.
static HTML5: LazyLock<HashMap<&'static str, String>> = LazyLock::new(|| {
    include_str!("html5_entities.tsv")
        .lines()
        .filter_map(|line| {
            let (name, codes) = line.split_once('\t')?;
            let text = codes
                .split(' ')
                .map(|hex| u32::from_str_radix(hex, 16).ok().and_then(char::from_u32))
                .collect::<Option<String>>()?;
            Some((name, text))
        })
        .collect()
});

/// ftfy's `HTML_ENTITIES`: `&name;` for every semicolon-terminated HTML5 entity, plus the upper-cased form of
/// all-lowercase names whose upper-cased form `html.unescape` would leave alone, mapped to the upper-cased text.
static FTFY_ENTITIES: LazyLock<HashMap<String, String>> = LazyLock::new(|| {
    let mut map = HashMap::new();
    for (name, text) in HTML5.iter() {
        if !name.ends_with(';') {
            continue;
        }
        map.insert(format!("&{name}"), text.clone());
        if *name == name.to_lowercase() {
            let upper = format!("&{}", name.to_uppercase());
            if unescape(&upper) == upper {
                map.insert(upper, text.to_uppercase());
            }
        }
    }
    map
});

/// Python's `html._charref`.
static CHARREF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\x0C <&#;]{1,32};?)").expect("static regex")
});

/// ftfy's `HTML_ENTITY_RE`.
static FTFY_ENTITY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"&#?[0-9A-Za-z]{1,24};").expect("static regex"));

/// Python's `html.unescape`: decodes every named and numeric character reference by the HTML5 rules.
pub fn unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    CHARREF
        .replace_all(text, |caps: &Captures| replace_charref(&caps[1]))
        .into_owned()
}

/// ftfy's `unescape_html`: decodes `&name;` entities (and upper-cased Latin ones) and `&#...;` references that
/// end in a semicolon, leaving ambiguous text such as `this&not that` alone.
pub fn ftfy_unescape(text: &str) -> String {
    FTFY_ENTITY
        .replace_all(text, |caps: &Captures| {
            let entity = &caps[0];
            if let Some(text) = FTFY_ENTITIES.get(entity) {
                text.clone()
            } else if entity.starts_with("&#") {
                let decoded = unescape(entity);
                if decoded.contains(';') {
                    entity.to_string()
                } else {
                    decoded
                }
            } else {
                entity.to_string()
            }
        })
        .into_owned()
}

/// One match of `html._charref` (without its `&`) -> its replacement, as `html._replace_charref`.
fn replace_charref(reference: &str) -> String {
    if let Some(number) = reference.strip_prefix('#') {
        let (digits, radix) = match number.strip_prefix(['x', 'X']) {
            Some(hex) => (hex, 16),
            None => (number, 10),
        };
        // Unparseable means too large for u32: past U+10FFFF either way.
        let code = u32::from_str_radix(digits.trim_end_matches(';'), radix).unwrap_or(u32::MAX);
        return numeric_reference(code);
    }
    if let Some(text) = HTML5.get(reference) {
        return text.clone();
    }
    // The longest entity name that prefixes the reference, at least two characters long.
    let bounds: Vec<usize> = reference.char_indices().map(|(i, _)| i).collect();
    for &end in bounds.iter().skip(2).rev() {
        if let Some(text) = HTML5.get(&reference[..end]) {
            return format!("{text}{}", &reference[end..]);
        }
    }
    format!("&{reference}")
}

/// A numeric character reference's code point -> its text, with the HTML5 replacements for invalid ones.
fn numeric_reference(code: u32) -> String {
    if let Some(c) = windows_1252_replacement(code) {
        return c.to_string();
    }
    if (0xD800..=0xDFFF).contains(&code) || code > 0x10FFFF {
        return '\u{FFFD}'.to_string();
    }
    let invalid = matches!(code, 0x1..=0x8 | 0xB | 0xE..=0x1F | 0x7F..=0x9F | 0xFDD0..=0xFDEF)
        || (code & 0xFFFE) == 0xFFFE;
    if invalid {
        return String::new();
    }
    char::from_u32(code).map(String::from).unwrap_or_default()
}

/// Python's `html._invalid_charrefs`: NUL, CR and the C1 range read as Windows-1252.
fn windows_1252_replacement(code: u32) -> Option<char> {
    Some(match code {
        0x00 => '\u{FFFD}',
        0x0D => '\r',
        0x80..=0x9F => c1_as_windows_1252(char::from_u32(code)?),
        _ => return None,
    })
}

/// A C1 control character (U+0080..U+009F) read as its Windows-1252 byte; the five bytes Windows-1252 leaves
/// undefined stay as they are (Python's `sloppy-windows-1252`, which ftfy's `fix_c1_controls` uses too).
pub fn c1_as_windows_1252(c: char) -> char {
    const TABLE: [char; 32] = [
        '\u{20AC}', '\u{81}', '\u{201A}', '\u{192}', '\u{201E}', '\u{2026}', '\u{2020}',
        '\u{2021}', '\u{2C6}', '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8D}', '\u{17D}',
        '\u{8F}', '\u{90}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}',
        '\u{2014}', '\u{2DC}', '\u{2122}', '\u{161}', '\u{203A}', '\u{153}', '\u{9D}', '\u{17E}',
        '\u{178}',
    ];
    match c as u32 {
        code @ 0x80..=0x9F => TABLE[(code - 0x80) as usize],
        _ => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_table_is_complete() {
        // Python 3.11 `len(html.entities.html5)`.
        assert_eq!(HTML5.len(), 2231);
        assert_eq!(HTML5.get("amp;").map(String::as_str), Some("&"));
        assert_eq!(HTML5.get("amp").map(String::as_str), Some("&"));
    }

    #[test]
    fn python_unescape_rules() {
        // Expected values from Python 3.11 `html.unescape`.
        assert_eq!(unescape("&amp;amp; &lt &notit; &ampx"), "&amp; < ¬it; &x");
        assert_eq!(
            unescape("&#0;&#x80;&#128512;&#xD800;&#1114112;&#1;&#65;&#x41"),
            "\u{FFFD}€😀\u{FFFD}\u{FFFD}AA"
        );
        assert_eq!(unescape("&unknown; & &;"), "&unknown; & &;");
    }

    #[test]
    fn ftfy_unescape_rules() {
        // Expected values from ftfy 6.3.1 `fixes.unescape_html`.
        assert_eq!(
            ftfy_unescape("P&EACUTE;REZ &ntilde; &NTILDE; &nTILDE; this&not that"),
            "PÉREZ ñ Ñ &nTILDE; this&not that"
        );
        assert_eq!(ftfy_unescape("&AMP; &#x2019; &#39;"), "& \u{2019} '");
    }
}
