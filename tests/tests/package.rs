//! The Debian package, installed for real: `dpkg -i` in a Debian 12 booted under systemd
//! (`vault_tests::machine`), its files, owners and modes, the service user, then the unit run
//! by systemd as the guide says — on SoftHSM with the PIN as a systemd credential, and on a TPM
//! (an swtpm over TCP, with the TPM drop-in) with its auth secret as one — a seal and an
//! unseal through it, `systemctl reload` and `stop`, the hardening score systemd gives the
//! installed unit, and removal and purge (which keep the store); the web console's own unit,
//! hardened, serving pages from the daemon; and docs/OPERATIONS.md run as written from the
//! package to a daemon serving TLS with client certificates and the console serving HTTPS.
//!
//! The package is built from the debug binaries the test command built
//! (`scripts/build-deb.sh --test`); `scripts/build-deb.sh` makes the release one.

use serde_json::Value;
use vault_tests::doc_blocks;
use vault_tests::machine::{Machine, Ran, workspace_script};

const UNIT: &str = "mynumber-locker.service";
const CONSOLE_UNIT: &str = "mynumber-locker-console.service";
/// A PIN nobody would find in a log by chance: the journal must never show it.
const PIN: &str = "7194-credential-pin-3862";
const NUMBER: &str = "123456789018";

/// The package built from this tree, once per run of this binary.
fn package() -> &'static std::path::Path {
    static PACKAGE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PACKAGE.get_or_init(|| {
        vault_tests::machine::workspace_root()
            .join(workspace_script("scripts/build-deb.sh", &["--test"]))
    })
}

/// A machine with the package built from this tree at `/srv/share/mynumber-locker.deb`.
fn machine_with_package() -> (tempfile::TempDir, Machine) {
    let share = tempfile::tempdir().expect("tempdir");
    std::fs::copy(package(), share.path().join("mynumber-locker.deb")).expect("copy the package");
    let machine = Machine::boot(share.path());
    (share, machine)
}

fn install(machine: &Machine) {
    machine.ok("dpkg -i /srv/share/mynumber-locker.deb");
}

/// Owner, group and octal mode of each path, one line each.
fn stat(machine: &Machine, paths: &[&str]) -> Vec<String> {
    machine
        .ok(&format!("stat -c '%n %U:%G %a' {}", paths.join(" ")))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The daemon's port in the machine, away from the guide's default (50051); the machine's
/// network is its own, so nothing else holds it.
const PORT: u16 = 50_100;
/// The swtpm standing in for a TPM (its control port is the next one).
const TPM_PORT: u16 = 2321;

/// `vault-client` in the machine against the daemon on `port`, with the token in `token`.
fn client(machine: &Machine, port: u16, token: &str, args: &str) -> Ran {
    machine.sh(&format!(
        "LOCKER_ADDR=http://127.0.0.1:{port} LOCKER_TOKEN_FILE={token} vault-client --output json {args}"
    ))
}

fn json_lines(ran: &Ran) -> Vec<Value> {
    ran.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e} ({ran:?})")))
        .collect()
}

/// The office's first day, as docs/OPERATIONS.md tells it: a tenant, a payroll service
/// operator, its grant and its token — each held until the second admin approves, the token
/// in two shares — then a seal and an unseal through the daemon the unit runs.
fn first_day_seal_and_unseal(machine: &Machine, port: u16) {
    let admin = "/var/lib/mynumber-locker/initial-admin.token";
    let admin2 = "/var/lib/mynumber-locker/initial-admin2.token";
    let approve = |held: &Ran, extra: &str| {
        assert_eq!(held.code, 9, "held for approval: {held:?}");
        let id = json_lines(held)[0]["pending_request"]["id"]
            .as_str()
            .expect("request id")
            .to_owned();
        let decided = client(machine, port, admin2, &format!("approve {id} {extra}"));
        assert_eq!(decided.code, 0, "{decided:?}");
        assert_eq!(json_lines(&decided)[0]["state"], "applied", "{decided:?}");
    };
    let added = client(machine, port, admin, "tenant add acme --name 株式会社ACME");
    assert_eq!(added.code, 0, "{added:?}");
    approve(
        &client(
            machine,
            port,
            admin,
            "operator add payroll --role service --name 給与システム",
        ),
        "",
    );
    approve(
        &client(
            machine,
            port,
            admin,
            "grant payroll --tenant acme --purpose STAFF_WITHHOLDING",
        ),
        "",
    );
    approve(
        &client(
            machine,
            port,
            admin,
            "token issue payroll --ttl 86400 --out /root/payroll.share1",
        ),
        "--share-out /root/payroll.share2",
    );
    machine.ok("vault-client token combine /root/payroll.share1 /root/payroll.share2 --out /root/payroll.token");
    let sealed = machine.sh(&format!(
        "printf {NUMBER} | LOCKER_ADDR=http://127.0.0.1:{port} LOCKER_TOKEN_FILE=/root/payroll.token \
         vault-client --output json seal --tenant acme --subject E0001 --kind staff \
         --purpose STAFF_WITHHOLDING --number-check MNC --identity-check MNC"
    ));
    assert_eq!(sealed.code, 0, "{sealed:?}");
    let handle = json_lines(&sealed)[0]["handle"]
        .as_str()
        .expect("handle")
        .to_owned();
    let unsealed = client(
        machine,
        port,
        "/root/payroll.token",
        &format!("unseal {handle} --purpose STAFF_WITHHOLDING"),
    );
    assert_eq!(unsealed.code, 0, "{unsealed:?}");
    assert!(unsealed.stdout.contains(NUMBER), "{unsealed:?}");
}

/// The exposure `systemd-analyze security` gives the installed `unit` (with its drop-ins).
fn exposure(machine: &Machine, unit: &str) -> f64 {
    let text = machine.ok(&format!("systemd-analyze security --no-pager {unit}"));
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure line: {text}"));
    line.split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the exposure in {line:?}"))
}

/// The `name:` line of the daemon's `/proc/PID/status` (its ids after the name).
fn daemon_status_line(machine: &Machine, name: &str) -> Vec<String> {
    status_line(machine, UNIT, name)
}

/// The `name:` line of `/proc/PID/status` of `unit`'s main process.
fn status_line(machine: &Machine, unit: &str, name: &str) -> Vec<String> {
    let pid = machine.ok(&format!("systemctl show -p MainPID --value {unit}"));
    let status = machine.ok(&format!("cat /proc/{}/status", pid.trim()));
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} line: {status}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// `systemctl start` returns once the daemon serves (Type=notify): is-active right away.
fn start_and_check_it_runs_as_its_user(machine: &Machine) {
    machine.ok(&format!("systemctl start {UNIT}"));
    assert_eq!(
        machine.ok(&format!("systemctl is-active {UNIT}")).trim(),
        "active"
    );
    let uid = machine.ok("id -u mynumber-locker");
    let uids = daemon_status_line(machine, "Uid:");
    assert!(
        uids.iter().all(|id| id == uid.trim()),
        "the daemon runs as mynumber-locker, never root: {uids:?}"
    );
}

/// `systemctl reload` is a SIGHUP the daemon applies and reports; `stop` drains, signs the
/// final checkpoint and exits 0.
fn reload_then_stop(machine: &Machine) {
    machine.ok(&format!("systemctl reload {UNIT}"));
    assert_eq!(
        machine.ok(&format!("systemctl is-active {UNIT}")).trim(),
        "active"
    );
    let journal = machine.ok(&format!("journalctl --no-pager -u {UNIT}"));
    assert!(journal.contains("SIGHUP"), "{journal}");
    machine.ok(&format!("systemctl stop {UNIT}"));
    let shown = machine.ok(&format!(
        "systemctl show -p Result -p ExecMainStatus -p ActiveState {UNIT}"
    ));
    for expected in ["Result=success", "ExecMainStatus=0", "ActiveState=inactive"] {
        assert!(shown.contains(expected), "{expected}: {shown}");
    }
    let journal = machine.ok(&format!("journalctl --no-pager -u {UNIT}"));
    assert!(
        journal.contains("final audit checkpoint signed"),
        "{journal}"
    );
    assert!(
        !journal.contains(PIN) && !journal.contains(NUMBER),
        "the journal shows a secret: {journal}"
    );
}

#[test]
fn the_package_installs_its_files_user_and_owners_and_a_purge_keeps_the_store() {
    let (_share, machine) = machine_with_package();
    install(&machine);

    assert_eq!(
        stat(
            &machine,
            &[
                "/usr/bin/vault-daemon",
                "/usr/bin/vault-client",
                "/usr/bin/vault-console",
                "/lib/systemd/system/mynumber-locker.service",
                "/lib/systemd/system/mynumber-locker-console.service",
                "/etc/mynumber-locker",
                "/etc/mynumber-locker/locker.toml",
                "/etc/mynumber-locker/softhsm2.conf",
                "/etc/mynumber-locker/credentials",
                "/etc/mynumber-locker/console-credentials",
                "/var/lib/mynumber-locker",
                "/var/lib/mynumber-locker/softhsm/tokens",
                "/usr/share/doc/mynumber-locker/OPERATIONS.md",
                "/usr/share/doc/mynumber-locker/examples/tpm.conf",
                "/usr/share/doc/mynumber-locker/examples/console-tls.conf",
                "/usr/share/doc/mynumber-locker/examples/locker.example.toml",
            ]
        ),
        [
            "/usr/bin/vault-daemon root:root 755",
            "/usr/bin/vault-client root:root 755",
            "/usr/bin/vault-console root:root 755",
            "/lib/systemd/system/mynumber-locker.service root:root 644",
            "/lib/systemd/system/mynumber-locker-console.service root:root 644",
            "/etc/mynumber-locker root:mynumber-locker 750",
            "/etc/mynumber-locker/locker.toml root:mynumber-locker 640",
            "/etc/mynumber-locker/softhsm2.conf root:root 644",
            "/etc/mynumber-locker/credentials root:root 700",
            "/etc/mynumber-locker/console-credentials root:root 700",
            "/var/lib/mynumber-locker mynumber-locker:mynumber-locker 700",
            "/var/lib/mynumber-locker/softhsm/tokens mynumber-locker:mynumber-locker 700",
            "/usr/share/doc/mynumber-locker/OPERATIONS.md root:root 644",
            "/usr/share/doc/mynumber-locker/examples/tpm.conf root:root 644",
            "/usr/share/doc/mynumber-locker/examples/console-tls.conf root:root 644",
            "/usr/share/doc/mynumber-locker/examples/locker.example.toml root:root 644",
        ]
    );
    // A system user that cannot log in, at home in the data directory.
    let user = machine.ok("getent passwd mynumber-locker");
    let fields: Vec<&str> = user.trim().split(':').collect();
    let uid: u32 = fields[2].parse().expect("uid");
    assert!(uid < 1000, "a system user: {user}");
    assert_eq!(fields[5], "/var/lib/mynumber-locker", "{user}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "{user}");
    // The config files are conffiles (an upgrade keeps an office's edits), and the unit is
    // known to systemd but not started: it needs its key backend set up first.
    let conffiles = machine.ok("dpkg-query -W -f '${Conffiles}' mynumber-locker");
    for file in [
        "/etc/mynumber-locker/locker.toml",
        "/etc/mynumber-locker/softhsm2.conf",
    ] {
        assert!(conffiles.contains(file), "{file}: {conffiles}");
    }
    for unit in [UNIT, CONSOLE_UNIT] {
        assert_eq!(
            machine
                .sh(&format!("systemctl is-enabled {unit}"))
                .stdout
                .trim(),
            "disabled",
            "{unit}"
        );
        assert_eq!(
            machine
                .sh(&format!("systemctl is-active {unit}"))
                .stdout
                .trim(),
            "inactive",
            "{unit}"
        );
    }
    assert!(
        machine
            .ok("vault-client --version")
            .contains("vault-client")
    );

    // Installing again (an upgrade, a repair) keeps owners, and nothing of the office's.
    machine.ok(
        "echo keep > /var/lib/mynumber-locker/store-marker && (umask 077; echo secret > /etc/mynumber-locker/credentials/pkcs11-pin)",
    );
    install(&machine);
    assert_eq!(
        stat(&machine, &["/etc/mynumber-locker/locker.toml"]),
        ["/etc/mynumber-locker/locker.toml root:mynumber-locker 640"]
    );

    // Remove: the programs go, the configuration stays.
    machine.ok("dpkg -r mynumber-locker");
    assert_ne!(machine.sh("test -e /usr/bin/vault-daemon").code, 0);
    assert_ne!(machine.sh("test -e /usr/bin/vault-console").code, 0);
    machine.ok("test -e /etc/mynumber-locker/locker.toml");
    // Purge: the configuration goes; the store and its secrets stay, and the purge says so.
    let purged = machine.sh("dpkg -P mynumber-locker");
    assert_eq!(purged.code, 0, "{purged:?}");
    assert_ne!(
        machine.sh("test -e /etc/mynumber-locker/locker.toml").code,
        0
    );
    machine.ok("test -e /var/lib/mynumber-locker/store-marker");
    machine.ok("test -e /etc/mynumber-locker/credentials/pkcs11-pin");
    assert!(
        purged
            .stderr
            .contains("kept /var/lib/mynumber-locker (the store"),
        "{purged:?}"
    );
}

#[test]
fn the_unit_runs_the_locker_on_softhsm_with_the_pin_as_a_credential() {
    let (_share, machine) = machine_with_package();
    install(&machine);
    let port = PORT;
    // docs/OPERATIONS.md, "SoftHSM": the token made as the service user, the PIN root's.
    machine.ok(&format!(
        "runuser -u mynumber-locker -- env SOFTHSM2_CONF=/etc/mynumber-locker/softhsm2.conf \
           softhsm2-util --init-token --free --label mynumber-locker --so-pin so-{PIN} --pin {PIN} \
         && sed -i 's/127.0.0.1:50051/127.0.0.1:{port}/' /etc/mynumber-locker/locker.toml"
    ));
    // A PIN forgotten: the start fails, and the journal says which file to write.
    let refused = machine.sh(&format!("systemctl start {UNIT}"));
    assert_ne!(refused.code, 0, "started without its PIN: {refused:?}");
    let journal = machine.ok(&format!("journalctl --no-pager -u {UNIT}"));
    assert!(
        journal.contains("/etc/mynumber-locker/credentials/pkcs11-pin"),
        "{journal}"
    );
    machine.ok(&format!(
        "systemctl stop {UNIT}; systemctl reset-failed {UNIT}; \
         (umask 077; printf '%s\\n' '{PIN}' > /etc/mynumber-locker/credentials/pkcs11-pin)"
    ));
    start_and_check_it_runs_as_its_user(&machine);
    // The daemon got the PIN, its user still cannot read the file it came from.
    let read =
        machine.sh("runuser -u mynumber-locker -- cat /etc/mynumber-locker/credentials/pkcs11-pin");
    assert_ne!(
        read.code, 0,
        "the service user reads the PIN file: {read:?}"
    );

    first_day_seal_and_unseal(&machine, port);

    let score = exposure(&machine, UNIT);
    eprintln!("exposure of the installed unit: {score}");
    assert!(score <= 2.0, "exposure {score} of the installed unit");
    reload_then_stop(&machine);

    // docs/OPERATIONS.md, break-glass: a one-off command of the daemon with the unit's user
    // and secrets. Its token then works on the restarted service.
    machine.ok(
        "systemd-run --wait --pipe --quiet --property=User=mynumber-locker \
           --property=LoadCredential=locker:/etc/mynumber-locker/credentials \
           --setenv=SOFTHSM2_CONF=/etc/mynumber-locker/softhsm2.conf \
           vault-daemon --config /etc/mynumber-locker/locker.toml --recover-admin admin",
    );
    let recovered = "/var/lib/mynumber-locker/recovered-admin.token";
    assert_eq!(
        stat(&machine, &[recovered]),
        [format!("{recovered} mynumber-locker:mynumber-locker 600")]
    );
    machine.ok(&format!("systemctl start {UNIT}"));
    let listed = client(&machine, port, recovered, "operator list");
    assert_eq!(listed.code, 0, "{listed:?}");
    assert!(listed.stdout.contains("payroll"), "{listed:?}");
}

#[test]
fn the_tpm_drop_in_runs_the_locker_on_a_tpm_with_its_secret_as_a_credential() {
    let (_share, machine) = machine_with_package();
    install(&machine);
    let (port, tpm_port) = (PORT, TPM_PORT);
    // No TPM device here (no CUSE nor vTPM proxy in this kernel): an swtpm in the machine
    // stands in for it over TCP. The drop-in is the one the package ships, so the unit runs
    // with the device rules and group a real /dev/tpmrm0 needs.
    machine.ok(&format!(
        "mkdir -p /var/lib/swtpm-test && systemd-run --unit=swtpm-test --quiet \
           swtpm socket --tpm2 --tpmstate dir=/var/lib/swtpm-test \
           --server type=tcp,port={tpm_port},bindaddr=127.0.0.1 \
           --ctrl type=tcp,port={ctrl},bindaddr=127.0.0.1 --flags not-need-init,startup-clear",
        ctrl = tpm_port + 1
    ));
    machine.ok(&format!(
        "cp /usr/share/doc/mynumber-locker/examples/tpm.example.toml /etc/mynumber-locker/locker.toml \
         && sed -i -e 's/127.0.0.1:50051/127.0.0.1:{port}/' \
                   -e 's#device:/dev/tpmrm0#swtpm:host=127.0.0.1,port={tpm_port}#' \
                   -e 's/^parameter_encryption = true/parameter_encryption = false/' \
              /etc/mynumber-locker/locker.toml \
         && (umask 077; head -c 32 /dev/urandom > /etc/mynumber-locker/credentials/tpm-auth) \
         && mkdir -p /etc/systemd/system/mynumber-locker.service.d \
         && cp /usr/share/doc/mynumber-locker/examples/tpm.conf /etc/systemd/system/mynumber-locker.service.d/ \
         && systemctl daemon-reload"
    ));
    start_and_check_it_runs_as_its_user(&machine);
    // The daemon holds group tss, the owner of /dev/tpmrm0 on Debian.
    let tss = machine.ok("getent group tss | cut -d: -f3");
    let groups = daemon_status_line(&machine, "Groups:");
    assert!(
        groups.iter().any(|g| g == tss.trim()),
        "group tss ({}) missing: {groups:?}",
        tss.trim()
    );
    // The TPM and the clock's read-only entry (ProtectClock=) are the only devices it may open.
    let devices = machine.ok(&format!("systemctl show -p DeviceAllow --value {UNIT}"));
    let mut devices: Vec<&str> = devices.lines().map(str::trim).collect();
    devices.sort_unstable();
    assert_eq!(devices, ["/dev/tpmrm0 rw", "char-rtc r"]);

    first_day_seal_and_unseal(&machine, port);

    let score = exposure(&machine, UNIT);
    eprintln!("exposure of the installed unit: {score}");
    assert!(
        score <= 2.0,
        "exposure {score} of the unit with the TPM drop-in"
    );
    reload_then_stop(&machine);
}

/// Signs in to the console at `base` with the token file `token` as a browser would — the
/// sign-in page's form token and cookie, the file chosen in a multipart form, the console's
/// own origin — and returns the session cookie (`name=value`); `curl_args` (say `--cacert …`)
/// go with every request.
fn console_sign_in(machine: &Machine, base: &str, token: &str, curl_args: &str) -> String {
    let cookie = machine.ok(&format!(
        r#"set -e
page=$(curl -sSf -D /tmp/signin.h {curl_args} {base}/signin)
form=$(printf '%s' "$page" | sed -n 's/.*name="signin" value="\([^"]*\)".*/\1/p')
signin=$(tr -d '\r' < /tmp/signin.h | sed -n 's/^set-cookie: \(__Host-mnl-signin=[^;]*\).*/\1/Ip')
curl -sSf -D /tmp/signed.h -o /dev/null {curl_args} -H "Cookie: $signin" -H "Origin: {base}" \
  -H 'Sec-Fetch-Site: same-origin' -F "signin=$form" -F "token_file=@{token}" {base}/signin
tr -d '\r' < /tmp/signed.h | sed -n 's/^set-cookie: \(__Host-mnl-console=[^;]\+\);.*/\1/Ip'"#
    ));
    let cookie = cookie.trim().to_owned();
    assert!(
        cookie.starts_with("__Host-mnl-console="),
        "no session after signing in: {cookie:?}"
    );
    cookie
}

/// A page of the console at `base` for the session `cookie`: (content type, body).
fn console_get(
    machine: &Machine,
    base: &str,
    cookie: &str,
    path: &str,
    curl_args: &str,
) -> (String, String) {
    let ran = machine.ok(&format!(
        "curl -sSf {curl_args} -H 'Cookie: {cookie}' -o /tmp/page -w '%{{content_type}}' {base}{path} \
         && echo && head -c 200000 /tmp/page"
    ));
    let (content_type, body) = ran.split_once('\n').unwrap_or((&ran, ""));
    (content_type.to_owned(), body.to_owned())
}

/// The locker on SoftHSM as docs/OPERATIONS.md sets it up, on its shipped address
/// (127.0.0.1:50051), started by its unit.
fn start_on_softhsm(machine: &Machine) {
    machine.ok(&format!(
        "runuser -u mynumber-locker -- env SOFTHSM2_CONF=/etc/mynumber-locker/softhsm2.conf \
           softhsm2-util --init-token --free --label mynumber-locker --so-pin so-{PIN} --pin {PIN} \
         && (umask 077; printf '%s\\n' '{PIN}' > /etc/mynumber-locker/credentials/pkcs11-pin)"
    ));
    start_and_check_it_runs_as_its_user(machine);
}

/// The web console's unit as shipped, beside the daemon's: it starts once it listens (on
/// loopback, plain HTTP), runs as a user of its own that is neither root nor the daemon's,
/// scores at most 2.0 in `systemd-analyze security`, signs an admin in with their token file
/// and serves them pages and a PDF from the daemon, and stops cleanly; its journal holds no
/// token.
#[test]
fn the_console_unit_serves_its_pages_from_the_daemon_hardened_and_stops_cleanly() {
    let (_share, machine) = machine_with_package();
    install(&machine);
    start_on_softhsm(&machine);

    machine.ok(&format!("systemctl start {CONSOLE_UNIT}"));
    assert_eq!(
        machine
            .ok(&format!("systemctl is-active {CONSOLE_UNIT}"))
            .trim(),
        "active"
    );
    let status = machine.ok(&format!(
        "systemctl show -p StatusText --value {CONSOLE_UNIT}"
    ));
    assert_eq!(status.trim(), "serving", "READY came with its status");
    let uids = status_line(&machine, CONSOLE_UNIT, "Uid:");
    let daemon_uid = machine.ok("id -u mynumber-locker");
    assert!(
        uids.iter().all(|id| id != "0" && id != daemon_uid.trim()),
        "the console runs as its own user, never root nor the daemon's: {uids:?}"
    );

    let base = "http://127.0.0.1:8480";
    let admin = "/var/lib/mynumber-locker/initial-admin.token";
    let session = console_sign_in(&machine, base, admin, "");
    let (content_type, operators) = console_get(&machine, base, &session, "/operators", "");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(operators.contains("admin2"), "{operators}");
    // The ledger as a PDF: the font found and read under the unit's sandbox.
    let (content_type, pdf) = console_get(&machine, base, &session, "/ledger.pdf", "");
    assert_eq!(content_type, "application/pdf");
    assert!(pdf.starts_with("%PDF-"), "{}", &pdf[..pdf.len().min(200)]);

    let score = exposure(&machine, CONSOLE_UNIT);
    eprintln!("exposure of the installed console unit: {score}");
    assert!(score <= 2.0, "exposure {score} of the console unit");

    machine.ok(&format!("systemctl stop {CONSOLE_UNIT}"));
    let shown = machine.ok(&format!(
        "systemctl show -p Result -p ExecMainStatus -p ActiveState {CONSOLE_UNIT}"
    ));
    for expected in ["Result=success", "ExecMainStatus=0", "ActiveState=inactive"] {
        assert!(shown.contains(expected), "{expected}: {shown}");
    }
    let token = machine.ok(&format!("cat {admin}"));
    let journal = machine.ok(&format!("journalctl --no-pager -u {CONSOLE_UNIT}"));
    assert!(journal.contains("signed in"), "{journal}");
    assert!(
        !journal.contains(token.trim()) && !journal.contains(PIN),
        "the console's journal shows a secret: {journal}"
    );
}

/// The guide's commands under `headings`, placeholders filled in, as a bash script for the
/// machine (each placeholder must still be in the guide).
fn operations_script(headings: &[&str], fill: &[(&str, &str)]) -> String {
    let guide =
        std::fs::read_to_string(vault_tests::machine::workspace_root().join("docs/OPERATIONS.md"))
            .expect("docs/OPERATIONS.md");
    let mut commands: Vec<doc_blocks::DocCommand> = headings
        .iter()
        .flat_map(|heading| doc_blocks::commands_under(&guide, heading))
        .collect();
    for (placeholder, value) in fill {
        let mut found = false;
        for command in &mut commands {
            if command.text.contains(placeholder) {
                command.text = command.text.replace(placeholder, value);
                found = true;
            }
        }
        assert!(found, "the guide no longer has {placeholder}");
    }
    doc_blocks::script(&commands, "docs/OPERATIONS.md")
}

/// docs/OPERATIONS.md as written, in a bare Debian 12 booted under systemd: "Install it", "Key
/// backend: SoftHSM", "TLS and client certificates" (openssl, the server key as a credential),
/// the guide's `[tls]` settings in locker.toml, "Start" — then the admin's token works over
/// TLS with the payroll client certificate and is refused without one.
#[test]
fn the_operations_guide_runs_as_written_from_the_package_to_tls() {
    let share = tempfile::tempdir().expect("tempdir");
    // Where the guide's `apt-get install ./target/debian/…` finds it.
    let debian = share.path().join("target/debian");
    std::fs::create_dir_all(&debian).expect("mkdir");
    std::fs::copy(package(), debian.join("mynumber-locker_0.1.0-1_amd64.deb"))
        .expect("copy the package");
    let fill = [("<SO PIN>", "so-1234-5678"), ("<USER PIN>", PIN)];
    std::fs::write(
        share.path().join("install.sh"),
        operations_script(
            &[
                "### Install it",
                "### Key backend: SoftHSM",
                "### TLS and client certificates",
            ],
            &fill,
        ),
    )
    .expect("script");
    std::fs::write(
        share.path().join("start.sh"),
        operations_script(&["### Start"], &[]),
    )
    .expect("script");
    std::fs::write(
        share.path().join("console.sh"),
        operations_script(&["### The console under systemd"], &[]),
    )
    .expect("script");
    let machine = Machine::boot(share.path());

    machine.ok("cd /srv/share && bash install.sh");
    // "and in /etc/mynumber-locker/locker.toml:" — the guide's [server] and [tls] in place of
    // the shipped [server].
    let guide =
        std::fs::read_to_string(vault_tests::machine::workspace_root().join("docs/OPERATIONS.md"))
            .expect("guide");
    let tls = doc_blocks::block_under(&guide, "### TLS and client certificates", "toml");
    let config = machine.ok("cat /etc/mynumber-locker/locker.toml");
    let shipped_server = "[server]\nlisten = \"127.0.0.1:50051\"\n";
    assert!(config.contains(shipped_server), "{config}");
    let config = config.replacen(shipped_server, &tls, 1);
    machine.ok(&format!(
        "cat > /etc/mynumber-locker/locker.toml <<'GUIDE'\n{config}GUIDE\n\
         echo '127.0.0.1 locker.example.lan' >> /etc/hosts"
    ));
    machine.ok("cd /srv/share && bash start.sh");
    assert_eq!(
        machine.ok(&format!("systemctl is-active {UNIT}")).trim(),
        "active"
    );

    let over_tls = |identity: &str| {
        machine.sh(&format!(
            "vault-client --endpoint https://locker.example.lan:50051 \
               --ca /etc/mynumber-locker/locker-ca.crt {identity} \
               --token-file /var/lib/mynumber-locker/initial-admin.token whoami"
        ))
    };
    let with_certificate =
        over_tls("--cert /root/payroll-client.crt --key /root/payroll-client.key");
    assert_eq!(with_certificate.code, 0, "{with_certificate:?}");
    assert!(
        with_certificate.stdout.contains("admin"),
        "{with_certificate:?}"
    );
    let without = over_tls("");
    assert_ne!(
        without.code, 0,
        "no client certificate, yet served: {without:?}"
    );
    // The server key reached the daemon as a credential; its source stays root's.
    assert_eq!(
        stat(&machine, &["/etc/mynumber-locker/credentials/server.key"]),
        ["/etc/mynumber-locker/credentials/server.key root:root 600"]
    );

    // "The console under systemd": HTTPS for the office's network, the daemon called over TLS
    // with the console's own client certificate, its keys as the console's credentials.
    machine.ok("cd /srv/share && bash console.sh");
    assert_eq!(
        machine
            .ok(&format!("systemctl is-active {CONSOLE_UNIT}"))
            .trim(),
        "active"
    );
    let (base, ca) = (
        "https://locker.example.lan:8443",
        "--cacert /etc/mynumber-locker/locker-ca.crt",
    );
    let session = console_sign_in(
        &machine,
        base,
        "/var/lib/mynumber-locker/initial-admin.token",
        ca,
    );
    let (_, operators) = console_get(&machine, base, &session, "/operators", ca);
    assert!(operators.contains("admin2"), "{operators}");
    // Plain HTTP is not served there, and nothing listens on the shipped loopback address.
    assert_ne!(
        machine
            .sh("curl -sS -o /dev/null http://locker.example.lan:8443/signin")
            .code,
        0
    );
    assert_ne!(
        machine
            .sh("curl -sS -o /dev/null http://127.0.0.1:8480/signin")
            .code,
        0
    );
    for key in ["tls.crt", "tls.key", "client.crt", "client.key", "ca.crt"] {
        let path = format!("/etc/mynumber-locker/console-credentials/{key}");
        assert_eq!(stat(&machine, &[&path]), [format!("{path} root:root 600")]);
    }
    // The console's keys are not the daemon's: its credentials hold neither.
    let daemon_credentials = machine.ok(&format!("ls /run/credentials/{UNIT}/"));
    assert!(
        !daemon_credentials.contains("tls.key") && !daemon_credentials.contains("client.key"),
        "{daemon_credentials}"
    );
}
