//! Reading back what the locker's printable records and exported files are on disk: a PDF's
//! text as poppler's `pdftotext` sees it, and a file's permission bits.

use std::path::Path;
use std::process::Command;

/// The text of `path` as `pdftotext -layout` reads it (UTF-8).
pub fn pdftotext(path: &Path) -> String {
    let output = Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(path)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils) must be installed: scripts/install-deps.sh");
    assert!(
        output.status.success(),
        "pdftotext refused {}",
        path.display()
    );
    String::from_utf8(output.stdout).expect("UTF-8 text")
}

/// The permission bits of `path` (`0o600`).
pub fn file_mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("written")
        .permissions()
        .mode()
        & 0o777
}
