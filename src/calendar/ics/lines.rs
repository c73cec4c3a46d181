//! Unfolding and content lines.
//!
//! A *physical line* is what a text editor shows; a *content line* is one property after
//! unfolding (RFC 5545 section 3.1): `NAME;PARAM=value;PARAM="quoted":value`.

use super::{IcsError, MAX_FILE_BYTES, MAX_LINE_BYTES};

/// One property after unfolding, with the 1-based physical line it started on.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ContentLine {
    /// Physical line number of the first octet.
    pub line: usize,
    /// Property or keyword name, upper-cased (`DTSTART`, `BEGIN`).
    pub name: String,
    /// Parameters in order, names upper-cased, quotes removed.
    pub params: Vec<(String, String)>,
    /// Raw value after the first unquoted colon, still escaped.
    pub value: String,
}

impl ContentLine {
    /// Returns the value of parameter `name` (upper-case).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Unfolds `bytes` and splits them into content lines; blank lines are skipped.
///
/// Unfolding happens on octets, before UTF-8 decoding, because exporters fold inside multi-byte
/// characters. A line break is CRLF, a bare LF or a bare CR, because Lightning leaks bare CRs
/// into descriptions. A break followed by one space or tab is a fold and is removed.
pub(crate) fn content_lines(bytes: &[u8]) -> Result<Vec<ContentLine>, IcsError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(IcsError::TooLarge {
            bytes: bytes.len(),
            limit: MAX_FILE_BYTES,
        });
    }

    let mut lines = Vec::new();
    for (line, raw) in unfold(bytes) {
        if raw.iter().all(|byte| *byte == b' ' || *byte == b'\t') {
            continue;
        }
        if raw.len() > MAX_LINE_BYTES {
            return Err(IcsError::LineTooLong {
                line,
                bytes: raw.len(),
                limit: MAX_LINE_BYTES,
            });
        }
        let text = String::from_utf8(raw).map_err(|_| IcsError::NotUtf8 { line })?;
        lines.push(parse_content_line(line, &text)?);
    }
    Ok(lines)
}

/// Splits `bytes` into unfolded lines, each with the physical line number it starts on.
fn unfold(bytes: &[u8]) -> Vec<(usize, Vec<u8>)> {
    let mut lines = Vec::new();
    let mut current = Vec::new();
    let mut start_line = 1;
    let mut line = 1;
    let mut index = 0;

    while index < bytes.len() {
        let break_len = match (bytes[index], bytes.get(index + 1)) {
            (b'\r', Some(b'\n')) => 2,
            (b'\r' | b'\n', _) => 1,
            _ => 0,
        };
        if break_len == 0 {
            current.push(bytes[index]);
            index += 1;
            continue;
        }

        if bytes[index] != b'\r' || break_len == 2 {
            line += 1;
        }
        index += break_len;
        if matches!(bytes.get(index), Some(b' ' | b'\t')) {
            index += 1;
            continue;
        }
        lines.push((start_line, std::mem::take(&mut current)));
        start_line = line;
    }
    if !current.is_empty() {
        lines.push((start_line, current));
    }
    lines
}

/// Splits one unfolded line into name, parameters and value.
fn parse_content_line(line: usize, text: &str) -> Result<ContentLine, IcsError> {
    let name_end = text.find([';', ':']).ok_or_else(|| IcsError::Syntax {
        line,
        message: format!("content line {:?} has no colon", preview(text)),
    })?;
    let name = text[..name_end].trim().to_ascii_uppercase();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(IcsError::Syntax {
            line,
            message: format!("property name {:?} is invalid", preview(&text[..name_end])),
        });
    }

    let mut params = Vec::new();
    let mut rest = &text[name_end..];
    while let Some(after_semicolon) = rest.strip_prefix(';') {
        let (param, remaining) = parse_param(line, &name, after_semicolon)?;
        params.push(param);
        rest = remaining;
    }
    let value = rest.strip_prefix(':').ok_or_else(|| IcsError::Syntax {
        line,
        message: format!("{name} has no colon before its value"),
    })?;

    Ok(ContentLine {
        line,
        name,
        params,
        value: value.to_string(),
    })
}

/// Parses `NAME=value` or `NAME="quoted"` (values may be lists) and returns what follows.
fn parse_param<'a>(
    line: usize,
    property: &str,
    text: &'a str,
) -> Result<((String, String), &'a str), IcsError> {
    let invalid = |what: &str| IcsError::Syntax {
        line,
        message: format!("{property} parameter {:?} {what}", preview(text)),
    };
    let equals = text.find('=').ok_or_else(|| invalid("has no '='"))?;
    let key = text[..equals].trim().to_ascii_uppercase();
    let mut rest = &text[equals + 1..];
    let mut value = String::new();

    loop {
        if let Some(quoted) = rest.strip_prefix('"') {
            let close = quoted
                .find('"')
                .ok_or_else(|| invalid("has an unclosed quote"))?;
            value.push_str(&quoted[..close]);
            rest = &quoted[close + 1..];
        } else {
            let end = rest.find([',', ';', ':']).unwrap_or(rest.len());
            value.push_str(&rest[..end]);
            rest = &rest[end..];
        }
        match rest.strip_prefix(',') {
            Some(next) => {
                value.push(',');
                rest = next;
            }
            None => break,
        }
    }
    Ok(((key, value), rest))
}

/// Cuts `text` to its first 60 characters for error messages.
pub(crate) fn preview(text: &str) -> String {
    text.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn unfold_joins_crlf_lf_and_tab_folds() {
        let lines = unfold(b"A:1\r\n 2\nB:3\n\t4\r\nC:5");
        let texts: Vec<_> = lines.iter().map(|(n, l)| (*n, l.clone())).collect();
        assert_eq!(
            texts,
            vec![
                (1, b"A:12".to_vec()),
                (3, b"B:34".to_vec()),
                (5, b"C:5".to_vec())
            ]
        );
    }

    #[test]
    fn unfold_rejoins_split_multibyte_character() -> TestResult {
        let lines = content_lines("SUMMARY:\u{416}".as_bytes())?;
        let bytes = "SUMMARY:\u{416}".as_bytes();
        let mut folded = bytes[..9].to_vec();
        folded.extend_from_slice(b"\r\n ");
        folded.extend_from_slice(&bytes[9..]);
        let refolded = content_lines(&folded)?;
        assert_eq!(lines, refolded);
        Ok(())
    }

    #[test]
    fn quoted_parameter_keeps_colon_semicolon_comma() -> TestResult {
        let lines = content_lines(b"LOCATION;ALTREP=\"http://x.example/?a=1;b=2,c:3\":Hall")?;
        assert_eq!(
            lines[0].param("ALTREP"),
            Some("http://x.example/?a=1;b=2,c:3")
        );
        assert_eq!(lines[0].value, "Hall");
        Ok(())
    }

    #[test]
    fn line_without_colon_is_rejected_with_line_number() -> TestResult {
        let error = content_lines(b"BEGIN:VCALENDAR\r\nGARBAGE\r\n")
            .err()
            .ok_or("expected an error")?;
        assert!(error.to_string().starts_with("line 2:"), "{error}");
        Ok(())
    }
}
