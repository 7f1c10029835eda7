//! Process hardening at start, before any secret is read: no core dumps (`RLIMIT_CORE` 0) and
//! not dumpable (`PR_SET_DUMPABLE` 0), so neither a crash nor another process of the same user
//! (ptrace, `/proc/PID/mem`) can lift numbers, DEKs, PINs or bearer tokens out of the
//! process's memory. Through rustix: no unsafe code of ours.

use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};

/// Applies both; an error says which one failed (the process then refuses to start).
pub fn harden_process() -> Result<(), String> {
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )
    .map_err(|e| format!("cannot turn core dumps off (RLIMIT_CORE): {e}"))?;
    set_dumpable_behavior(DumpableBehavior::NotDumpable)
        .map_err(|e| format!("cannot make the process non-dumpable (PR_SET_DUMPABLE): {e}"))
}
