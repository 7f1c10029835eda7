//! The audit log: tail, export, verify (online, or offline with no daemon), public keys, key
//! rotation; and the online backup. Definitions and the calls; printing is in `output`.

use std::path::PathBuf;

use clap::Subcommand;
use vault_client::{Client, ClientError, pb};

use crate::output::{self, Format};

/// Audit log commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The newest entries.
    Tail {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Export entries and signed checkpoints as JSON lines.
    Export {
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Only entries after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Verify the chain and its signed checkpoints: in the daemon's store, or offline in an
    /// export file with the audit public keys or a pinned first-key fingerprint (no daemon, no
    /// token needed).
    Verify {
        /// An export file (from `audit export`) to verify offline.
        #[arg(long, value_name = "FILE")]
        offline: Option<PathBuf>,
        /// PEM file with the audit public keys (from `audit public-key`).
        #[arg(long, value_name = "PEM", requires = "offline", conflicts_with = "pin")]
        public_key: Option<PathBuf>,
        /// The first audit key's fingerprint (hex, printed by `audit public-key`): trust only
        /// keys the export chains from it, version by version.
        #[arg(long, value_name = "FINGERPRINT", requires = "offline")]
        pin: Option<String>,
    },
    /// Print the audit public keys (PEM, every version).
    PublicKey {
        /// Write them to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Rotate the audit signing key (admins); old keys stay for old checkpoints.
    RotateKey,
}

/// `audit verify --offline FILE`: an export checked with neither daemon nor token, against the
/// audit public keys or the pinned key id.
pub fn verify_offline(
    file: &std::path::Path,
    pem: Option<&std::path::Path>,
    pin: Option<&str>,
    format: Format,
) -> Result<(), String> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let lines = vault_audit::offline::parse_export(&read(file)?)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let report = match (pem, pin) {
        (_, Some(pin)) => {
            let pin = hex::decode(pin.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or("--pin takes the 64-hex-digit fingerprint printed by `audit public-key`")?;
            vault_audit::offline::verify_pinned(&lines, &pin)
        }
        (Some(pem), None) => {
            let keys = vault_audit::checkpoint::parse_public_keys_pem(&read(pem)?)
                .map_err(|e| format!("{}: {e}", pem.display()))?;
            vault_audit::offline::verify(&lines, &keys)
        }
        (None, None) => {
            return Err("offline verification needs --public-key PEM or --pin FINGERPRINT".into());
        }
    };
    output::offline_report(format, &report);
    if report.ok {
        Ok(())
    } else {
        Err(format!(
            "audit export does not verify: first bad entry {}",
            report
                .first_bad_seq
                .map_or_else(|| "unknown".into(), |s| s.to_string())
        ))
    }
}

/// `backup`: a consistent snapshot of the store, streamed to `out`.
pub async fn backup(client: &mut Client, out: PathBuf, format: Format) -> Result<(), ClientError> {
    let stream = client
        .admin
        .backup(pb::BackupRequest {})
        .await?
        .into_inner();
    output::backup(format, stream, &out).await?;
    Ok(())
}

/// An `audit` command.
pub async fn run(
    client: &mut Client,
    command: AuditCommand,
    format: Format,
) -> Result<(), ClientError> {
    match command {
        AuditCommand::Tail { limit } => {
            let response = client
                .admin
                .audit_tail(pb::AuditTailRequest { limit })
                .await?
                .into_inner();
            output::audit_entries(format, &response.entries);
        }
        AuditCommand::Export { out, after } => {
            let stream = client
                .admin
                .audit_export(pb::AuditExportRequest {
                    after_seq: after,
                    ..Default::default()
                })
                .await?
                .into_inner();
            // Checkpoints are read after the entries, so every one names an exported entry or
            // one committed later (which a verifier reports as beyond the export).
            let export = output::audit_export(stream, out.as_deref()).await?;
            let listed = client
                .admin
                .audit_checkpoints(pb::AuditCheckpointsRequest { after_seq: after })
                .await?
                .into_inner();
            let keys = client
                .admin
                .audit_public_keys(pb::AuditPublicKeysRequest {})
                .await?
                .into_inner()
                .keys;
            output::append_checkpoints(
                export,
                &listed.checkpoints,
                &keys,
                listed.anchor.as_ref(),
                out.as_deref(),
            )?;
        }
        AuditCommand::PublicKey { out } => {
            let keys = client
                .admin
                .audit_public_keys(pb::AuditPublicKeysRequest {})
                .await?
                .into_inner()
                .keys;
            output::public_keys(format, &keys, out.as_deref())?;
        }
        AuditCommand::RotateKey => {
            let key = client
                .admin
                .rotate_audit_key(pb::RotateAuditKeyRequest {})
                .await?
                .into_inner();
            output::public_keys(format, &[key], None)?;
        }
        AuditCommand::Verify { offline: None, .. } => {
            let report = client
                .admin
                .audit_verify(pb::AuditVerifyRequest {})
                .await?
                .into_inner();
            output::verify_report(format, &report);
            if !report.ok {
                return Err(ClientError::Status(tonic::Status::data_loss(format!(
                    "audit chain broken at entry {}: {}",
                    report.first_bad_seq, report.message
                ))));
            }
        }
        AuditCommand::Verify {
            offline: Some(_), ..
        } => {
            return Err(ClientError::Usage(
                "offline verification runs without connecting".into(),
            ));
        }
    }
    Ok(())
}
