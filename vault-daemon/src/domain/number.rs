//! The individual number (個人番号): normalisation, check digit, and a detector used to keep
//! numbers out of free-text fields.
//!
//! Errors here never contain the input: a message that echoes a rejected number would leak it
//! into logs and the audit trail.

use zeroize::Zeroizing;

/// Why an input is not an individual number. Deliberately carries no digits of the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// A character other than a digit, a space or a hyphen.
    #[error("individual number contains a character that is not a digit, space or hyphen")]
    InvalidCharacter,
    /// A separator at the start or end, or two in a row.
    #[error("individual number has a misplaced separator")]
    MisplacedSeparator,
    /// Not exactly 12 digits.
    #[error("individual number must have 12 digits, got {0}")]
    WrongLength(usize),
    /// The 12th digit does not match the first eleven.
    #[error("individual number check digit does not match")]
    CheckDigit,
}

/// A validated individual number: exactly 12 ASCII digits with a correct check digit.
/// The digits are erased from memory on drop, and Debug never shows them.
pub struct IndividualNumber(Zeroizing<String>);

impl std::fmt::Debug for IndividualNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IndividualNumber(<redacted>)")
    }
}

impl IndividualNumber {
    /// Normalises `input` (ASCII or full-width digits; single spaces, full-width spaces or
    /// hyphens between digits) and verifies the check digit.
    pub fn parse(input: &str) -> Result<IndividualNumber, NumberError> {
        let mut digits = Zeroizing::new(String::with_capacity(12));
        let mut last_was_separator = true; // forbids a leading separator
        for c in input.trim().chars() {
            if let Some(d) = digit_value(c) {
                if digits.len() < 13 {
                    digits.push(char::from(b'0' + d));
                }
                last_was_separator = false;
            } else if is_separator(c) {
                if last_was_separator {
                    return Err(NumberError::MisplacedSeparator);
                }
                last_was_separator = true;
            } else {
                return Err(NumberError::InvalidCharacter);
            }
        }
        if last_was_separator && !digits.is_empty() {
            return Err(NumberError::MisplacedSeparator);
        }
        if digits.len() != 12 {
            let count = input
                .trim()
                .chars()
                .filter(|c| digit_value(*c).is_some())
                .count();
            return Err(NumberError::WrongLength(count));
        }
        let bytes = digits.as_bytes();
        let expected = check_digit(&bytes[..11]);
        if bytes[11] - b'0' != expected {
            return Err(NumberError::CheckDigit);
        }
        Ok(IndividualNumber(digits))
    }

    /// The 12 ASCII digits.
    pub fn digits(&self) -> &str {
        &self.0
    }
}

/// Check digit of the first eleven digits (平成26年総務省令第85号 第5条): with Pn the n-th digit
/// from the right and Qn = n+1 for n ≤ 6, n−5 for n ≥ 7, r = Σ Pn·Qn mod 11; 0 if r ≤ 1,
/// else 11 − r.
fn check_digit(first_eleven: &[u8]) -> u8 {
    let sum: u32 = first_eleven
        .iter()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let n = i as u32 + 1;
            let q = if n <= 6 { n + 1 } else { n - 5 };
            u32::from(b - b'0') * q
        })
        .sum();
    let r = sum % 11;
    if r <= 1 { 0 } else { (11 - r) as u8 }
}

fn digit_value(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '０'..='９' => Some((c as u32 - '０' as u32) as u8),
        _ => None,
    }
}

fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '\u{3000}' | '-' | '－' | '‐' | 'ー')
}

/// Whether `text` holds twelve digits, in a row of digits that nothing but punctuation, spaces
/// or invisible characters separates, which form a valid individual number (any twelve in a
/// row of more). Free-text fields that end up in records and audit entries (subject references,
/// reasons, names) are refused when this is true, so a number cannot be smuggled into places
/// that are not encrypted — not as `E001-123456789018`, `123456789018 1`, `1234/5678/9018` or
/// with zero-width characters between the groups either. Letters end a row. The price: text
/// with many digits (two dates) is now and then refused too, one twelve-digit window in eleven.
pub fn contains_individual_number(text: &str) -> bool {
    let mut digits: Vec<u8> = Vec::new();
    let check = |digits: &mut Vec<u8>| {
        let found = digits
            .windows(12)
            .any(|window| check_digit(&window[..11]) == window[11] - b'0');
        digits.iter_mut().for_each(|d| *d = 0);
        digits.clear();
        found
    };
    for c in text.chars() {
        if let Some(d) = digit_value(c).or_else(|| kanji_digit_value(c)) {
            digits.push(d + b'0');
        } else if !is_dash_like(c) && c.is_alphabetic() && check(&mut digits) {
            return true;
        }
    }
    check(&mut digits)
}

/// Kanji numerals, read digit by digit as a number is written out (`一二三四…〇`), with the
/// forms used in formal writing (大字).
fn kanji_digit_value(c: char) -> Option<u8> {
    Some(match c {
        '〇' | '零' => 0,
        '一' | '壱' => 1,
        '二' | '弐' => 2,
        '三' | '参' => 3,
        '四' => 4,
        '五' => 5,
        '六' => 6,
        '七' => 7,
        '八' => 8,
        '九' => 9,
        _ => return None,
    })
}

/// Marks that look like a hyphen but count as letters to Unicode: the prolonged sound mark an
/// IME types for "-" (U+30FC, half-width U+FF70), and the like. Between digits they separate
/// groups; they never end a row.
fn is_dash_like(c: char) -> bool {
    matches!(
        c,
        '\u{30FC}' | '\u{FF70}' | '\u{30A0}' | '\u{2010}'
            ..='\u{2015}'
                | '\u{2212}'
                | '\u{FE63}'
                | '\u{FF0D}'
                | '\u{02D7}'
                | '\u{2043}'
                | '\u{301C}'
                | '\u{FF5E}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_numbers_in_every_form() {
        for input in [
            "123456789018",
            "983205673214",
            "023456789013",
            "１２３４５６７８９０１８",
            "1234-5678-9018",
            "1234 5678 9018",
            "９８３２－０５６７－３２１４",
            " 0234 5678 9013 ",
        ] {
            let number = IndividualNumber::parse(input).expect(input);
            assert_eq!(number.digits().len(), 12);
        }
        assert_eq!(
            IndividualNumber::parse("１２３４-５６７８-９０１８")
                .expect("valid")
                .digits(),
            "123456789018"
        );
    }

    #[test]
    fn rejects_bad_numbers_with_specific_errors() {
        assert_eq!(
            IndividualNumber::parse("123456789019").map(|_| ()),
            Err(NumberError::CheckDigit)
        );
        assert_eq!(
            IndividualNumber::parse("12345678901").map(|_| ()),
            Err(NumberError::WrongLength(11))
        );
        assert_eq!(
            IndividualNumber::parse("1234567890181").map(|_| ()),
            Err(NumberError::WrongLength(13))
        );
        assert_eq!(
            IndividualNumber::parse("12345678901a").map(|_| ()),
            Err(NumberError::InvalidCharacter)
        );
        assert_eq!(
            IndividualNumber::parse("1234--5678-9018").map(|_| ()),
            Err(NumberError::MisplacedSeparator)
        );
        assert_eq!(
            IndividualNumber::parse("-123456789018").map(|_| ()),
            Err(NumberError::MisplacedSeparator)
        );
        assert_eq!(
            IndividualNumber::parse("").map(|_| ()),
            Err(NumberError::WrongLength(0))
        );
    }

    #[test]
    fn check_digit_matches_the_ordinance_for_every_position() {
        // r = Σ Pn·Qn mod 11 computed by hand for 12345678901: weights from the right
        // 2,3,4,5,6,7,2,3,4,5,6 → 1*2+0*3+9*4+8*5+7*6+6*7+5*2+4*3+3*4+2*5+1*6 = 212; 212 mod 11 = 3
        assert_eq!(check_digit(b"12345678901"), 8);
        assert_eq!(check_digit(b"00000000000"), 0);
    }

    #[test]
    fn errors_never_echo_the_digits() {
        for input in [
            "123456789019",
            "12345678901",
            "9832056732149",
            "98320567321x",
        ] {
            let message = IndividualNumber::parse(input)
                .expect_err("rejected")
                .to_string();
            assert!(!message.contains("98320"), "{message}");
            assert!(!message.contains("12345"), "{message}");
        }
    }

    #[test]
    fn debug_is_redacted() {
        let number = IndividualNumber::parse("123456789018").expect("valid");
        assert!(!format!("{number:?}").contains("1234"));
    }

    #[test]
    fn detects_numbers_in_free_text() {
        assert!(contains_individual_number("employee 123456789018"));
        assert!(contains_individual_number("1234-5678-9018"));
        assert!(contains_individual_number("ID:１２３４５６７８９０１８."));
        assert!(!contains_individual_number("E-000123"));
        assert!(!contains_individual_number("123456789019"));
        // The bypasses an attacker's test found: digits around the number, other separators,
        // invisible characters between the groups.
        for smuggled in [
            "E001-123456789018",
            "123456789018 1",
            "1234567890180",
            "1234/5678/9018",
            "1234\u{200B}5678\u{200B}9018",
            "1234\u{2060}5678\u{FEFF}9018",
            "１２３４・５６７８・９０１８",
            "(1234) 5678_9018",
        ] {
            assert!(contains_individual_number(smuggled), "{smuggled:?}");
        }
        // What a Japanese IME types: the prolonged sound mark for "-", full and half width,
        // and kanji numerals.
        for typed in [
            "1234ー5678ー9018",
            "1234ｰ5678ｰ9018",
            "一二三四五六七八九〇一八",
            "一二三四ー五六七八ー九〇一八",
            "番号は１２３４〜５６７８〜９０１８です",
        ] {
            assert!(contains_individual_number(typed), "{typed:?}");
        }
        assert!(!contains_individual_number("一二三四五六七八九〇一九"));
        // Letters end a row of digits.
        assert!(!contains_individual_number("E001 A123456789019"));
        assert!(!contains_individual_number(
            "社員番号 E0001、入社 2026-04-01"
        ));
    }
}
