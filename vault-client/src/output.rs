//! Printing results as text (for people and pipes) or JSON (for scripts). Only `unseal` ever
//! prints a number, and only to standard output.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use clap::ValueEnum;
use serde_json::{Value, json};
use vault_audit::checkpoint::Checkpoint;
use vault_audit::offline::{ExportLine, ExportedEntry, OfflineReport};
use vault_client::{ClientError, pb};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Plain text.
    Text,
    /// JSON.
    Json,
}

/// A time as RFC 3339 in Japan's time (`2026-12-07T14:05:00+09:00`): the office reads it as
/// its own clock, and a program parses it like any RFC 3339 time.
fn time(unix: i64) -> String {
    let jst = time::UtcOffset::from_hms(9, 0, 0).unwrap_or(time::UtcOffset::UTC);
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.to_offset(jst)
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// Whether a change is in force (`applied`) or waits for another admin's approval (`held`).
fn state(pending: Option<&pb::ChangeRequest>) -> &'static str {
    if pending.is_some() { "held" } else { "applied" }
}

/// Prints one JSON value on a line.
pub fn print_json(value: &Value) {
    println!("{value}");
}

/// After `health`: the daemon's serving status.
pub fn health(format: Format, status: &str) {
    match format {
        Format::Text => println!("{status}"),
        Format::Json => print_json(&json!({ "status": status })),
    }
}

/// After `seal`.
pub fn sealed(format: Format, response: &pb::SealResponse) {
    match format {
        Format::Text => {
            println!("{}", response.handle);
            // Standard output stays the handle alone, for scripts; the warning is for people.
            if let Some(warning) = seal_differences(response) {
                eprintln!("warning: {warning}");
            }
        }
        Format::Json => print_json(&json!({
            "handle": response.handle,
            "existing": response.existing,
            "purposes_not_on_record": response.purposes_not_on_record,
            "subject_ref_differs": response.subject_ref_differs,
            "subject_kind_differs": response.subject_kind_differs,
        })),
    }
}

/// What an existing record lacks of a seal's request, in words, if anything.
pub fn seal_differences(response: &pb::SealResponse) -> Option<String> {
    if !response.existing {
        return None;
    }
    let mut parts = Vec::new();
    if !response.purposes_not_on_record.is_empty() {
        parts.push(format!(
            "it lacks purposes {} (add them: vault-client purposes add {} --purpose {})",
            response.purposes_not_on_record.join(","),
            response.handle,
            response.purposes_not_on_record.join(",")
        ));
    }
    if response.subject_ref_differs {
        parts.push("it was sealed under another subject reference".into());
    }
    if response.subject_kind_differs {
        parts.push("it was sealed for another kind of subject".into());
    }
    (!parts.is_empty()).then(|| {
        format!(
            "the tenant already holds this number as {}, left unchanged: {}",
            response.handle,
            parts.join("; ")
        )
    })
}

/// A failed item of an unseal batch written to a file: said on standard error too.
pub fn batch_item_failed(line: u64, handle: &str, error: &Option<pb::BatchError>) {
    if let Some(e) = error {
        eprintln!("line {line}: {handle}: {}: {}", e.code, e.message);
    }
}

/// After an unseal batch wrote its numbers to a file that was recorded as a carry-out.
pub fn carried_out(
    format: Format,
    path: &std::path::Path,
    kind: pb::CarryOutFormat,
    count: u64,
    sha256: &str,
) {
    let kind = match kind {
        pb::CarryOutFormat::ZipAes256 => "AES-256 ZIP",
        pb::CarryOutFormat::Plaintext => "PLAINTEXT",
        pb::CarryOutFormat::Unspecified => "unspecified",
    };
    match format {
        Format::Json => print_json(&json!({
            "file": path.display().to_string(), "format": kind, "count": count, "sha256": sha256,
            "recorded": true,
        })),
        Format::Text => println!(
            "{count} numbers written to {} ({kind}), sha256 {sha256}; recorded as a carry-out (持出し)",
            path.display()
        ),
    }
}

/// After a file was written (a PDF).
pub fn written(format: Format, path: &std::path::Path, bytes: usize) {
    match format {
        Format::Json => print_json(&json!({"file": path.display().to_string(), "bytes": bytes})),
        Format::Text => println!("{} written ({bytes} bytes)", path.display()),
    }
}

/// A note for the person watching, on standard error (standard output stays data).
pub fn note(text: &str) {
    eprintln!("note: {text}");
}

/// After `unseal`.
pub fn number(format: Format, number: &str) {
    match format {
        Format::Text => println!("{number}"),
        Format::Json => print_json(&json!({ "number": number })),
    }
}

/// After `lookup`.
pub fn handle(format: Format, handle: &str) {
    match format {
        Format::Text => println!("{handle}"),
        Format::Json => print_json(&json!({ "handle": handle })),
    }
}

/// The CLI's name of a subject kind (as `--kind` takes it).
pub fn kind_name(value: i32) -> &'static str {
    match pb::SubjectKind::try_from(value) {
        Ok(pb::SubjectKind::Staff) => "staff",
        Ok(pb::SubjectKind::NonStaffPayee) => "non-staff-payee",
        Ok(pb::SubjectKind::Dependent) => "dependent",
        Ok(pb::SubjectKind::EntrustedEmployee) => "entrusted-employee",
        _ => "unspecified",
    }
}

fn role_name(value: i32) -> &'static str {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Admin) => "admin",
        Ok(pb::Role::Manager) => "manager",
        Ok(pb::Role::Handler) => "handler",
        Ok(pb::Role::Service) => "service",
        Ok(pb::Role::Auditor) => "auditor",
        _ => "unspecified",
    }
}

fn record_json(r: &pb::RecordInfo) -> Value {
    let v = r.verification.clone().unwrap_or_default();
    json!({
        "handle": r.handle,
        "tenant": r.tenant,
        "subject_ref": r.subject_ref,
        "subject_kind": kind_name(r.subject_kind),
        "purposes": r.purposes,
        "number_check": v.number_check,
        "identity_check": v.identity_check,
        "agent_authority": v.agent_authority,
        "acquired_at": time(r.acquired_at_unix),
        "acquired_by": r.acquired_by,
        "status": match pb::RecordStatus::try_from(r.status) {
            Ok(pb::RecordStatus::Disposed) => "disposed",
            Ok(pb::RecordStatus::Suspended) => "suspended",
            Ok(pb::RecordStatus::Retired) => "retired",
            _ => "active",
        },
        "retirement": r.retirement.as_ref().map(|t| json!({
            "left_on": t.left_on,
            "dispose_on": t.dispose_on,
            "retired_by": t.retired_by,
            "retired_at": time(t.retired_at_unix),
            "disposal_epoch": t.disposal_epoch,
            "usable_until": t.purposes.iter().map(|p| json!({"purpose": p.purpose, "until": p.usable_until})).collect::<Vec<_>>(),
        })),
        "key_version": r.key_version,
        "suspension": r.suspension.as_ref().map(|s| json!({
            "reason": s.reason,
            "suspended_by": s.suspended_by,
            "suspended_at": time(s.suspended_at_unix),
        })),
        "tombstone": r.tombstone.as_ref().map(|t| json!({
            "disposed_at": time(t.disposed_at_unix),
            "disposed_by": t.disposed_by,
            "reason": t.reason,
        })),
    })
}

/// A record's metadata.
pub fn record(format: Format, r: &pb::RecordInfo) {
    let value = record_json(r);
    match format {
        Format::Json => print_json(&value),
        Format::Text => {
            if let Value::Object(map) = value {
                for (key, value) in map {
                    match value {
                        Value::Null => {}
                        Value::String(s) => println!("{key:<16} {s}"),
                        other => println!("{key:<16} {other}"),
                    }
                }
            }
        }
    }
}

/// A tenant's ledger details.
pub fn tenant_info(format: Format, info: &pb::TenantInfo) {
    let fields = [
        ("tenant", &info.tenant),
        ("file_kind", &info.file_kind),
        ("file_name", &info.file_name),
        ("responsible_person", &info.responsible_person),
        ("responsible_department", &info.responsible_department),
        ("management_area", &info.management_area),
        ("handling_area", &info.handling_area),
    ];
    match format {
        Format::Json => print_json(&Value::Object(
            fields
                .iter()
                .map(|(name, value)| ((*name).to_owned(), Value::String((*value).clone())))
                .collect(),
        )),
        Format::Text => {
            for (name, value) in fields {
                println!("{name:<24} {value}");
            }
        }
    }
}

/// Tenants.
pub fn tenants(format: Format, tenants: &[pb::Tenant]) {
    for t in tenants {
        match format {
            Format::Json => print_json(&json!({
                "tenant_id": t.tenant_id, "name": t.name,
                "created_at": time(t.created_at_unix), "key_version": t.key_version,
            })),
            Format::Text => println!(
                "{}\t{}\tkey v{}\t{}",
                t.tenant_id,
                t.name,
                t.key_version,
                time(t.created_at_unix)
            ),
        }
    }
}

/// Operators.
pub fn operators(format: Format, operators: &[pb::Operator]) {
    for o in operators {
        let pending = o.pending_request.as_ref();
        let grants: Vec<String> = o
            .grants
            .iter()
            .map(|g| format!("{}:{}", g.tenant, g.purpose))
            .collect();
        match format {
            Format::Json => print_json(&json!({
                "operator_id": o.operator_id, "role": role_name(o.role), "display_name": o.display_name,
                "disabled": o.disabled, "grants": grants, "created_at": time(o.created_at_unix),
                "state": state(pending),
                "pending_request": pending.map(change_request_json),
            })),
            Format::Text => {
                println!(
                    "{}\t{}\t{}{}\t{}",
                    o.operator_id,
                    role_name(o.role),
                    o.display_name,
                    if o.disabled { " (disabled)" } else { "" },
                    grants.join(",")
                );
                if let Some(request) = pending {
                    held_line(request);
                }
            }
        }
    }
}

/// After `requests quorum`: the new quorum waits for approval like any other change (in
/// JSON the request line above carries its `state`).
pub fn held_quorum(format: Format, request: &pb::ChangeRequest) {
    if format == Format::Text {
        held_line(request);
    }
}

/// The line that tells a requester the change is not in force yet.
fn held_line(request: &pb::ChangeRequest) {
    println!(
        "HELD, not in force yet: request {} ({}) needs {} approval(s) by other admins before {}: vault-client approve {}",
        request.id,
        request.summary,
        request.required,
        time(request.expires_at_unix),
        request.id
    );
}

fn change_request_json(r: &pb::ChangeRequest) -> Value {
    json!({
        "id": r.id, "kind": r.kind, "summary": r.summary, "operator_id": r.operator_id,
        "state": r.state, "requested_by": r.requested_by,
        "requested_at": time(r.requested_at_unix), "expires_at": time(r.expires_at_unix),
        "required": r.required, "approved_by": r.approved_by,
        "denied_by": r.denied_by, "reason": r.reason,
        "decided_at": (r.decided_at_unix != 0).then(|| time(r.decided_at_unix)),
        "quorum": (r.kind == "set_quorum").then_some(r.quorum),
    })
}

/// Change requests; with `quorum`, a list (the quorum in force goes first in text).
pub fn change_requests(format: Format, requests: &[pb::ChangeRequest], quorum: Option<u32>) {
    match format {
        Format::Json => match quorum {
            Some(quorum) => print_json(&json!({
                "quorum": quorum,
                "requests": requests.iter().map(change_request_json).collect::<Vec<_>>(),
            })),
            None => requests
                .iter()
                .for_each(|r| print_json(&change_request_json(r))),
        },
        Format::Text => {
            if let Some(quorum) = quorum {
                println!("quorum: {quorum} approval(s) besides the requester");
            }
            for r in requests {
                println!(
                    "{}\t{}\t{}\trequested by {} at {}, open until {}\tapprovals {}/{}{}{}",
                    r.id,
                    r.state,
                    r.summary,
                    r.requested_by,
                    time(r.requested_at_unix),
                    time(r.expires_at_unix),
                    r.approved_by.len(),
                    r.required,
                    if r.approved_by.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", r.approved_by.join(","))
                    },
                    if r.denied_by.is_empty() {
                        String::new()
                    } else {
                        format!("\tdenied by {}: {}", r.denied_by, r.reason)
                    },
                );
            }
        }
    }
}

/// Opens `path` for writing, readable by its owner only (0600) — also when it existed before
/// (`replace`: truncated and its mode tightened; else an existing file is an error). Every file
/// the CLI writes holds what only its user should read: numbers, handles, subject references,
/// office details, audit evidence.
pub fn private_file(path: &Path, replace: bool) -> Result<std::fs::File, ClientError> {
    use std::os::unix::fs::PermissionsExt;
    let write_error = |source| ClientError::WriteFile {
        path: path.display().to_string(),
        source,
    };
    let mut options = OpenOptions::new();
    options.write(true).mode(0o600);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let file = options.open(path).map_err(write_error)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(write_error)?;
    Ok(file)
}

/// Writes a secret line to a new 0600 file.
fn write_secret_file(path: &Path, secret: &str) -> Result<(), ClientError> {
    let mut file = private_file(path, false)?;
    file.write_all(format!("{secret}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| ClientError::WriteFile {
            path: path.display().to_string(),
            source,
        })
}

/// Newly issued token (or, for another operator, its first share): to a 0600 file when
/// asked, else to standard output.
pub fn issued_token(
    format: Format,
    response: pb::IssueTokenResponse,
    out: Option<&Path>,
) -> Result<(), ClientError> {
    let is_share = !response.token_share.is_empty();
    let secret = zeroize::Zeroizing::new(if is_share {
        response.token_share
    } else {
        response.token
    });
    if let Some(path) = out {
        write_secret_file(path, secret.as_str())?;
    }
    let shown = if out.is_some() {
        None
    } else {
        Some(secret.as_str())
    };
    let label = if is_share { "token_share" } else { "token" };
    match format {
        Format::Json => print_json(&json!({
            "token_id": response.token_id,
            label: shown,
            format!("{label}_file"): out.map(|p| p.display().to_string()),
            "expires_at": time(response.expires_at_unix),
            "state": state(response.pending_request.as_ref()),
            "pending_request": response.pending_request.as_ref().map(change_request_json),
        })),
        Format::Text => {
            println!("token_id   {}", response.token_id);
            println!("expires_at {}", time(response.expires_at_unix));
            if let Some(request) = &response.pending_request {
                held_line(request);
            }
            match (shown, out) {
                (Some(secret), _) => println!("{label:<10} {secret}"),
                (None, Some(path)) => println!("{label}_file {}", path.display()),
                (None, None) => {}
            }
            if is_share {
                println!(
                    "this is share 1 of 2: the admin whose approval applies the request receives share 2; hand each to the operator's holder separately, who combines them: vault-client token combine SHARE1_FILE SHARE2_FILE"
                );
            }
        }
    }
    Ok(())
}

/// A token combined from its shares: to a 0600 file when asked, else to standard output.
pub fn combined_token(
    format: Format,
    token: &secrecy::SecretString,
    out: Option<&Path>,
) -> Result<(), ClientError> {
    use secrecy::ExposeSecret;
    if let Some(path) = out {
        write_secret_file(path, token.expose_secret())?;
    }
    match (format, out) {
        (Format::Json, Some(path)) => {
            print_json(&json!({"token_file": path.display().to_string()}));
        }
        (Format::Json, None) => print_json(&json!({"token": token.expose_secret()})),
        (Format::Text, Some(path)) => println!("token_file {}", path.display()),
        (Format::Text, None) => println!("{}", token.expose_secret()),
    }
    Ok(())
}

/// The answer to an approval; when it applied a token for another operator, the token's
/// second share (to a 0600 file when asked, else to standard output).
pub fn approved(
    format: Format,
    mut request: pb::ChangeRequest,
    share_out: Option<&Path>,
) -> Result<(), ClientError> {
    let share = zeroize::Zeroizing::new(std::mem::take(&mut request.token_share));
    if let (false, Some(path)) = (share.is_empty(), share_out) {
        write_secret_file(path, share.as_str())?;
    }
    let shown = (!share.is_empty() && share_out.is_none()).then_some(share.as_str());
    match format {
        Format::Json => {
            let mut value = change_request_json(&request);
            if !share.is_empty() {
                value["token_share"] = json!(shown);
                value["token_share_file"] = json!(share_out.map(|p| p.display().to_string()));
            }
            print_json(&value);
        }
        Format::Text => {
            change_requests(format, std::slice::from_ref(&request), None);
            if !share.is_empty() {
                match shown {
                    Some(secret) => println!("token_share {secret}"),
                    None => println!(
                        "token_share_file {}",
                        share_out
                            .map(|p| p.display().to_string())
                            .unwrap_or_default()
                    ),
                }
                println!(
                    "this is share 2 of 2 of the token for operator {}: hand it to the operator's holder; {} holds share 1; only both combined work (vault-client token combine)",
                    request.operator_id, request.requested_by
                );
            }
        }
    }
    Ok(())
}

/// Tokens (no secrets).
pub fn tokens(format: Format, tokens: &[pb::TokenInfo]) {
    for t in tokens {
        match format {
            Format::Json => print_json(&json!({
                "token_id": t.token_id, "operator_id": t.operator_id,
                "issued_at": time(t.issued_at_unix), "expires_at": time(t.expires_at_unix),
                "revoked": t.revoked, "cert_fingerprint": t.cert_fingerprint,
            })),
            Format::Text => println!(
                "{}\t{}\texpires {}{}{}",
                t.token_id,
                t.operator_id,
                time(t.expires_at_unix),
                if t.revoked { "\trevoked" } else { "" },
                if t.cert_fingerprint.is_empty() {
                    ""
                } else {
                    "\tcert-bound"
                }
            ),
        }
    }
}

/// The purpose catalogue.
pub fn purposes(format: Format, purposes: &[pb::Purpose]) {
    for p in purposes {
        match format {
            Format::Json => print_json(&json!({
                "code": p.code, "article": p.article, "label_ja": p.label_ja, "retention_years": p.retention_years,
            })),
            Format::Text => println!(
                "{:<30} {:<8} {}年 {}",
                p.code, p.article, p.retention_years, p.label_ja
            ),
        }
    }
}

/// One audit entry as an export line (the `vault-audit` offline format).
pub fn export_line(e: &pb::AuditEntry) -> ExportLine {
    ExportLine::Entry(ExportedEntry {
        seq: e.seq,
        time_ms: e.time_unix_ms,
        operator: e.operator_id.clone(),
        role: e.role.clone(),
        tenant: e.tenant.clone(),
        action: e.action.clone(),
        handle: e.handle.clone(),
        purpose: e.purpose.clone(),
        outcome: e.outcome.clone(),
        code: e.code.clone(),
        reason: e.reason.clone(),
        request_id: e.request_id.clone(),
        peer: e.peer.clone(),
        token_id: e.token_id.clone(),
        prev_hash: e.prev_hash.clone(),
        hash: e.hash.clone(),
        format: if e.format.is_empty() {
            vault_audit::entry::EntryFormat::V2.tag().into()
        } else {
            e.format.clone()
        },
        canonical: hex::encode(&e.canonical),
        state: e.state.clone(),
    })
}

/// One audit entry as JSON.
pub fn audit_json(e: &pb::AuditEntry) -> Value {
    serde_json::to_value(export_line(e)).unwrap_or(Value::Null)
}

/// Audit entries.
pub fn audit_entries(format: Format, entries: &[pb::AuditEntry]) {
    for e in entries {
        match format {
            Format::Json => print_json(&audit_json(e)),
            Format::Text => println!(
                "{:>6} {} {:<8} {:<10} {:<16} {:<8} {} {} {} {}",
                e.seq,
                time(e.time_unix_ms.div_euclid(1000)),
                e.outcome,
                e.operator_id,
                e.action,
                e.tenant,
                e.handle,
                e.purpose,
                e.code,
                e.reason
            ),
        }
    }
}

/// Streams an export's entries as JSON lines to a file or standard output; returns the sink so
/// the checkpoints can follow.
pub async fn audit_export(
    mut stream: tonic::Streaming<pb::AuditEntry>,
    out: Option<&Path>,
) -> Result<Box<dyn Write>, ClientError> {
    let mut sink: Box<dyn Write> = match out {
        Some(path) => Box::new(std::io::BufWriter::new(private_file(path, true)?)),
        None => Box::new(std::io::stdout().lock()),
    };
    let write_error = |source| ClientError::WriteFile {
        path: out
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "stdout".into()),
        source,
    };
    while let Some(entry) = stream.message().await? {
        writeln!(sink, "{}", audit_json(&entry)).map_err(write_error)?;
    }
    Ok(sink)
}

/// Appends the checkpoints, the keys and the signed anchor statement to an export and flushes
/// it.
pub fn append_checkpoints(
    mut sink: Box<dyn Write>,
    checkpoints: &[pb::AuditCheckpoint],
    keys: &[pb::AuditPublicKey],
    anchor: Option<&pb::AuditAnchorStatement>,
    out: Option<&Path>,
) -> Result<(), ClientError> {
    let write_error = |source| ClientError::WriteFile {
        path: out
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "stdout".into()),
        source,
    };
    for c in checkpoints {
        let line = ExportLine::Checkpoint(Checkpoint {
            number: c.number,
            prev: c.prev.clone(),
            state: c.state.clone(),
            seq: c.seq,
            chain_hash: c.chain_hash.clone(),
            time_ms: c.time_unix_ms,
            key_version: c.key_version,
            key_id: c.key_id.clone(),
            signature: c.signature.clone(),
        });
        writeln!(
            sink,
            "{}",
            serde_json::to_value(line).unwrap_or(Value::Null)
        )
        .map_err(write_error)?;
    }
    // The keys with their endorsements, so `verify --pin` can chain them from the first.
    for k in keys {
        let line = ExportLine::Key(vault_audit::offline::ExportedKey {
            version: k.version,
            public_key: k.public_point.clone(),
            endorsement: k.endorsement.clone(),
        });
        writeln!(
            sink,
            "{}",
            serde_json::to_value(line).unwrap_or(Value::Null)
        )
        .map_err(write_error)?;
    }
    // What the key backend had anchored: a verifier requires the export to reach it.
    if let Some(a) = anchor {
        let line = ExportLine::Anchor(vault_audit::statement::AnchorStatement {
            checkpoint: a.checkpoint,
            checkpoint_hash: a.checkpoint_hash.clone(),
            counter: a.counter,
            time_ms: a.time_unix_ms,
            key_version: a.key_version,
            key_id: a.key_id.clone(),
            signature: a.signature.clone(),
        });
        writeln!(
            sink,
            "{}",
            serde_json::to_value(line).unwrap_or(Value::Null)
        )
        .map_err(write_error)?;
    }
    sink.flush().map_err(write_error)
}

/// Audit public keys: PEM blocks (text) or JSON.
pub fn public_keys(
    format: Format,
    keys: &[pb::AuditPublicKey],
    out: Option<&Path>,
) -> Result<(), ClientError> {
    // The first version's id is what auditors pin (`audit verify --offline FILE --pin`).
    let fingerprint = keys
        .iter()
        .find(|k| k.version == 1)
        .map_or(String::new(), |k| k.key_id.clone());
    let text: String = match format {
        Format::Text => std::iter::once(format!("# fingerprint (pin this): {fingerprint}\n"))
            .chain(keys.iter().map(|k| format!("# audit key version {} id {} created {}\n{}", k.version, k.key_id, time(k.created_at_unix), k.public_key_pem)))
            .collect(),
        Format::Json => keys
            .iter()
            .map(|k| {
                format!(
                    "{}\n",
                    json!({"version": k.version, "key_id": k.key_id, "fingerprint": fingerprint, "created_at": time(k.created_at_unix), "public_key_pem": k.public_key_pem, "endorsement": k.endorsement})
                )
            })
            .collect(),
    };
    match out {
        Some(path) => private_file(path, true)?
            .write_all(text.as_bytes())
            .map_err(|source| ClientError::WriteFile {
                path: path.display().to_string(),
                source,
            }),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// Result of an offline verification.
pub fn offline_report(format: Format, report: &OfflineReport) {
    match format {
        Format::Json => print_json(&serde_json::to_value(report).unwrap_or(Value::Null)),
        Format::Text => {
            if report.ok {
                println!(
                    "OK: {} entries, {} checkpoints verified, anchored through entry {}; {} entries after it are unanchored",
                    report.entries,
                    report.checkpoints_verified,
                    report.anchored_through,
                    report.unanchored_tail
                );
                if let Some(number) = report.complete_through_checkpoint {
                    println!(
                        "complete: the export reaches checkpoint {number}, the one the key backend had anchored when it was made"
                    );
                }
            } else {
                println!(
                    "BROKEN at entry {}",
                    report
                        .first_bad_seq
                        .map_or_else(|| "?".into(), |s| s.to_string())
                );
            }
            for problem in &report.problems {
                println!("  {problem}");
            }
        }
    }
}

/// Result of `audit verify`.
pub fn verify_report(format: Format, r: &pb::AuditVerifyResponse) {
    match format {
        Format::Json => print_json(&json!({
            "ok": r.ok, "entries_checked": r.entries_checked,
            "first_bad_seq": if r.ok { None } else { Some(r.first_bad_seq) },
            "message": r.message, "head_hash": r.head_hash,
            "checkpoints_verified": r.checkpoints_verified, "anchored_through": r.anchored_through,
        })),
        Format::Text => {
            if r.ok {
                println!("OK: {} (head {})", r.message, r.head_hash);
            } else {
                println!("BROKEN at entry {}: {}", r.first_bad_seq, r.message);
            }
        }
    }
}

/// One progress report of a rewrap (a JSON line, or a text line when no bar is drawn).
pub fn rewrap_progress(format: Format, job: &pb::RewrapJob, rate: Option<f64>) {
    let finished = job.finished_at_unix_ms != 0;
    match format {
        Format::Json => print_json(&json!({
            "tenant": job.tenant, "target_version": job.target_version, "done": job.done,
            "total": job.total, "finished": finished, "rate_per_s": rate,
        })),
        Format::Text => println!(
            "tenant {} -> key version {}: {}/{} records rewrapped{}",
            job.tenant,
            job.target_version,
            job.done,
            job.total,
            if finished { " (complete)" } else { "" }
        ),
    }
}

/// The progress of a key rotation's rewrap: a bar on a terminal (text), else one line or JSON
/// object per poll.
pub struct RewrapProgress {
    format: Format,
    bar: Option<indicatif::ProgressBar>,
    started: std::time::Instant,
}

impl RewrapProgress {
    /// Starts showing the progress of `job`.
    pub fn start(format: Format, job: &pb::RewrapJob) -> RewrapProgress {
        let bar = (format == Format::Text).then(|| {
            let bar = indicatif::ProgressBar::new(job.total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {pos}/{len} records  {per_sec}  ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_message(format!("{} -> v{}", job.tenant, job.target_version));
            bar
        });
        RewrapProgress {
            format,
            bar,
            started: std::time::Instant::now(),
        }
    }

    /// Shows `job` as polled now.
    pub fn show(&self, job: &pb::RewrapJob) {
        let rate = job.done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        match &self.bar {
            Some(bar) => bar.set_position(job.done),
            None => rewrap_progress(self.format, job, Some(rate)),
        }
    }

    /// Ends the display with the final state.
    pub fn finish(self, job: &pb::RewrapJob) {
        if let Some(bar) = self.bar {
            bar.finish();
            rewrap_progress(self.format, job, None);
        }
    }
}

/// Key versions per tenant.
pub fn key_status(format: Format, tenants: &[pb::TenantKeyStatus]) {
    for t in tenants {
        match format {
            Format::Json => print_json(&json!({
                "tenant": t.tenant,
                "versions": t.versions.iter().map(|v| json!({"version": v.version, "state": v.state, "records": v.records})).collect::<Vec<_>>(),
                "rewrap": t.job.as_ref().map(|j| json!({
                    "target_version": j.target_version, "done": j.done, "total": j.total,
                    "finished": j.finished_at_unix_ms != 0,
                })),
            })),
            Format::Text => {
                println!("{}", t.tenant);
                for v in &t.versions {
                    println!("  v{:<4} {:<13} {} records", v.version, v.state, v.records);
                }
                if let Some(j) = &t.job {
                    println!(
                        "  rewrap to v{}: {}/{}{}",
                        j.target_version,
                        j.done,
                        j.total,
                        if j.finished_at_unix_ms != 0 {
                            " complete"
                        } else {
                            " running"
                        }
                    );
                }
            }
        }
    }
}

/// Key destruction requests.
pub fn destructions(format: Format, requests: &[pb::KeyDestruction]) {
    for r in requests {
        match format {
            Format::Json => print_json(&json!({
                "id": r.id, "tenant": r.tenant, "version": r.version, "state": r.state,
                "requested_by": r.requested_by, "requested_at": time(r.requested_at_unix),
                "approved_by": r.approved_by,
                "not_before": (r.not_before_unix != 0).then(|| time(r.not_before_unix)),
                "cancelled_by": r.cancelled_by,
                "done_at": (r.done_at_unix != 0).then(|| time(r.done_at_unix)),
            })),
            Format::Text => println!(
                "{}\t{} v{}\t{}\trequested by {}{}{}",
                r.id,
                r.tenant,
                r.version,
                r.state,
                r.requested_by,
                if r.approved_by.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", approved by {} (not before {})",
                        r.approved_by,
                        time(r.not_before_unix)
                    )
                },
                if r.cancelled_by.is_empty() {
                    String::new()
                } else {
                    format!(", cancelled by {}", r.cancelled_by)
                },
            ),
        }
    }
}

/// A deletion certificate for people (text) or machines (JSON).
pub fn certificate(format: Format, c: &pb::DeletionCertificate) {
    match format {
        Format::Json => print_json(&vault_client::certificate::certificate_json(c)),
        Format::Text => {
            println!("削除証明書 (deletion certificate)");
            println!("handle        {}", c.handle);
            println!("tenant        {}", c.tenant);
            println!("subject_ref   {}", c.subject_ref);
            println!("disposed_at   {}", time(c.disposed_at_ms / 1000));
            println!("method        {}", c.method);
            println!("responsible   {}", c.responsible);
            println!("signed by     audit key v{} ({})", c.key_version, c.key_id);
        }
    }
}

/// Correction records (never a number).
pub fn corrections(format: Format, list: &[pb::Correction]) {
    for c in list {
        match format {
            Format::Json => print_json(&json!({
                "id": c.id, "handle": c.handle, "tenant": c.tenant,
                "requested_by": c.requested_by, "requested_at": time(c.requested_at_unix),
                "reason": c.reason, "asked_by": c.asked_by, "state": c.state,
                "decided_by": c.decided_by,
                "decided_at": (c.decided_at_unix != 0).then(|| time(c.decided_at_unix)),
                "decision_note": c.decision_note, "change": c.change,
            })),
            Format::Text => println!(
                "{}\t{}\t{}\trequested by {} ({})\t{}",
                c.id,
                c.handle,
                c.state,
                c.requested_by,
                c.reason,
                if c.decided_by.is_empty() {
                    String::new()
                } else {
                    format!("decided by {}: {}", c.decided_by, c.change)
                }
            ),
        }
    }
}

/// Writes a backup stream to `out` (created 0600, never overwritten) and reports its size and
/// SHA-256. A stream that breaks off leaves the file removed, not half written.
pub async fn backup(
    format: Format,
    mut stream: tonic::Streaming<pb::BackupChunk>,
    out: &Path,
) -> Result<(), ClientError> {
    use std::os::unix::fs::OpenOptionsExt;
    let write_error = |source| ClientError::WriteFile {
        path: out.display().to_string(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(write_error)?;
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut bytes = 0u64;
    let copied: Result<(), ClientError> = async {
        while let Some(chunk) = stream.message().await? {
            digest.update(&chunk.data);
            bytes += chunk.data.len() as u64;
            file.write_all(&chunk.data).map_err(write_error)?;
        }
        file.sync_all().map_err(write_error)
    }
    .await;
    if let Err(error) = copied {
        let _ = std::fs::remove_file(out);
        return Err(error);
    }
    let sha256 = hex::encode(digest.finish());
    match format {
        Format::Json => {
            print_json(&json!({"out": out.display().to_string(), "bytes": bytes, "sha256": sha256}))
        }
        Format::Text => println!(
            "backup written to {}: {bytes} bytes, sha256 {sha256}",
            out.display()
        ),
    }
    Ok(())
}

/// Who the token authenticates.
pub fn whoami(format: Format, me: &pb::WhoAmIResponse) {
    let Some(operator) = &me.operator else {
        return;
    };
    let grants: Vec<String> = operator
        .grants
        .iter()
        .map(|g| format!("{}:{}", g.tenant, g.purpose))
        .collect();
    match format {
        Format::Json => print_json(&json!({
            "operator_id": operator.operator_id, "role": role_name(operator.role),
            "display_name": operator.display_name, "grants": grants,
            "token_id": me.token_id, "token_expires_at": time(me.token_expires_at_unix),
            "certificate_bound": me.certificate_bound,
        })),
        Format::Text => {
            println!(
                "operator   {} ({})",
                operator.operator_id,
                role_name(operator.role)
            );
            println!(
                "token      {} until {}",
                me.token_id,
                time(me.token_expires_at_unix)
            );
            if me.certificate_bound {
                println!("           bound to a client certificate");
            }
            if !grants.is_empty() {
                println!("grants     {}", grants.join(","));
            }
        }
    }
}

/// Writes `bytes` to a new file (never over an existing one) that only its owner can read:
/// certificates, the ledger and disclosure notices name handles, subject references and the
/// office.
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    use std::io::Write;
    let mut file = private_file(path, false)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))
}
