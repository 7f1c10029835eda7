//! Time, behind a trait so lifecycle code can be tested with a clock it controls.

use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// The system clock moved forward by a number of days read from a file on every call (tests
/// only: `vault-daemon --dev --lifecycle-clock-file FILE`). A missing or unreadable file means
/// no offset; the offset is never negative, so the test clock never runs behind real time.
#[derive(Debug, Clone)]
pub struct OffsetFileClock {
    file: std::path::PathBuf,
}

impl OffsetFileClock {
    /// A clock reading its offset in days from `file`.
    pub fn new(file: std::path::PathBuf) -> OffsetFileClock {
        OffsetFileClock { file }
    }
}

impl Clock for OffsetFileClock {
    fn now_ms(&self) -> i64 {
        let days = std::fs::read_to_string(&self.file)
            .ok()
            .and_then(|text| text.trim().parse::<i64>().ok())
            .unwrap_or(0)
            .clamp(0, 365 * 200);
        SystemClock.now_ms() + days * 86_400_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_file_moves_the_clock_forward_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("days");
        let clock = OffsetFileClock::new(file.clone());
        let real = SystemClock.now_ms();
        assert!((clock.now_ms() - real).abs() < 60_000, "no file: no offset");
        std::fs::write(&file, "365").expect("write");
        assert!(clock.now_ms() - real >= 365 * 86_400_000);
        std::fs::write(&file, "-30").expect("write");
        assert!(clock.now_ms() >= real, "never behind real time");
    }
}
