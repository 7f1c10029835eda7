//! Parsers of command-line values that several command families share.

/// A duration on the command line: whole seconds (`3600`) or humantime (`1h`, `30d`, `5s`).
pub fn parse_seconds(text: &str) -> Result<u64, String> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(seconds);
    }
    humantime::parse_duration(text)
        .map(|d| d.as_secs())
        .map_err(|e| format!("{text:?} is not a duration (seconds, or e.g. 90s, 12h, 30d): {e}"))
}
