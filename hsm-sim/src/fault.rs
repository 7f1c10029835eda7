//! Fault injection: the ways a token can misbehave, and where the current fault comes from.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::Duration;

/// Name of the control file, in the token directory, that selects a fault when enabled.
///
/// Its content is one of `unavailable`, `fail` or `delay <milliseconds>`; no file (or an empty
/// one) means healthy.
pub const FAULT_FILE_NAME: &str = "hsm-sim.fault";

/// A misbehaviour of the token applied to every operation while it is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The token works.
    None,
    /// The token is gone (device removed): every operation fails with `Unavailable`.
    Unavailable,
    /// The token answers with an error to every operation.
    Fail,
    /// Every operation waits this long before it runs.
    Delay(Duration),
}

impl Fault {
    /// Parses the content of the control file. Unknown content is treated as `Fail`, so a typo
    /// in a test never silently leaves the token healthy.
    pub fn parse(text: &str) -> Fault {
        let text = text.trim();
        if text.is_empty() {
            return Fault::None;
        }
        let mut words = text.split_whitespace();
        match (words.next(), words.next()) {
            (Some("unavailable"), None) => Fault::Unavailable,
            (Some("fail"), None) => Fault::Fail,
            (Some("delay"), Some(ms)) => match ms.parse::<u64>() {
                Ok(ms) => Fault::Delay(Duration::from_millis(ms)),
                Err(_) => Fault::Fail,
            },
            _ => Fault::Fail,
        }
    }
}

/// Decides the fault in force for each operation.
#[derive(Debug)]
pub(crate) struct FaultInjector {
    programmatic: RwLock<Fault>,
    control_file: Option<PathBuf>,
}

impl FaultInjector {
    pub(crate) fn new(dir: &Path, use_control_file: bool) -> Self {
        FaultInjector {
            programmatic: RwLock::new(Fault::None),
            control_file: use_control_file.then(|| dir.join(FAULT_FILE_NAME)),
        }
    }

    pub(crate) fn set(&self, fault: Fault) {
        *self.programmatic.write().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// The fault in force: the programmatic one if set, else the control file's.
    pub(crate) fn current(&self) -> Fault {
        let programmatic = *self.programmatic.read().unwrap_or_else(|e| e.into_inner());
        if programmatic != Fault::None {
            return programmatic;
        }
        match &self.control_file {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => Fault::parse(&text),
                Err(_) => Fault::None,
            },
            None => Fault::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_control_file_content() {
        assert_eq!(Fault::parse(""), Fault::None);
        assert_eq!(Fault::parse("unavailable\n"), Fault::Unavailable);
        assert_eq!(Fault::parse("fail"), Fault::Fail);
        assert_eq!(
            Fault::parse("delay 250"),
            Fault::Delay(Duration::from_millis(250))
        );
        assert_eq!(Fault::parse("delay soon"), Fault::Fail);
        assert_eq!(Fault::parse("broken"), Fault::Fail);
    }
}
