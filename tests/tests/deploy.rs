//! The shipped systemd unit as a file: its hardening as systemd itself scores it
//! (`systemd-analyze security --offline`, exposure at most 2.0 of 10), and the settings the
//! operations guide relies on. `package.rs` runs it, installed, under a booted systemd.

use std::path::Path;
use std::process::Command;

fn unit() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/mynumber-locker.service")
}

#[test]
fn the_systemd_unit_scores_an_exposure_of_at_most_2_0() {
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit())
        .output()
        .expect("systemd-analyze (package systemd; scripts/install-deps.sh installs it)");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no exposure line: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let exposure: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the exposure in {line:?}"));
    assert!(exposure <= 2.0, "{line}");
}

#[test]
fn the_unit_keeps_what_the_daemon_and_the_guide_rely_on() {
    let text = std::fs::read_to_string(unit()).expect("unit");
    for setting in [
        "Type=notify\n",
        "User=mynumber-locker",
        "ExecStart=/usr/bin/vault-daemon --config /etc/mynumber-locker/locker.toml\n",
        "LoadCredential=locker:/etc/mynumber-locker/credentials\n",
        "Environment=SOFTHSM2_CONF=/etc/mynumber-locker/softhsm2.conf\n",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/mynumber-locker",
        "NoNewPrivileges=true",
        "PrivateTmp=true",
        "MemoryDenyWriteExecute=true",
        "LimitCORE=0",
        "CapabilityBoundingSet=\n",
        "PrivateDevices=true",
    ] {
        assert!(text.contains(setting), "{setting:?} missing");
    }
}
