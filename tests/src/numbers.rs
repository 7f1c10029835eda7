//! Valid individual numbers for tests, generated with the check digit of the ordinance so a
//! test can seal many distinct numbers. The check digit is computed here independently of the
//! daemon's code on purpose: a test oracle that called the code under test would agree with
//! its bugs.

/// Check digit of the first eleven digits (平成26年総務省令第85号 第5条).
pub fn check_digit(first_eleven: &str) -> u32 {
    let sum: u32 = first_eleven
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let n = i as u32 + 1;
            let q = if n <= 6 { n + 1 } else { n - 5 };
            u32::from(b - b'0') * q
        })
        .sum();
    match sum % 11 {
        r if r <= 1 => 0,
        r => 11 - r,
    }
}

/// The `i`-th test number: eleven digits from a seed, plus the check digit.
pub fn valid_number(i: u64) -> String {
    let first = format!("{:011}", 50_000_000_000u64 + i * 7919);
    format!("{first}{}", check_digit(&first))
}

/// The three valid numbers of DESIGN.md.
pub const DESIGN_VALID: [&str; 3] = ["123456789018", "983205673214", "023456789013"];
