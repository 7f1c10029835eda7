//! What the daemon does by itself at start: create the first admin of an empty store, and in
//! dev mode provision a tenant and one operator per role. Audited as `SYSTEM` actions; tokens
//! go to 0600 files whose paths are logged, never their content.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use crate::audit::entry::AuditEntry;
use crate::audit::entry::EntryOutcome;
use crate::domain::operator::{Grant, Role};
use crate::domain::policy::Action;
use crate::domain::token::{self, hashes_equal, token_hash};
use crate::error::{Error, Result};
use crate::service::{Locker, NewTenant};
use crate::store::lease::{CallLease, PROVISIONING};
use crate::store::mutation::{Mutation, OperatorChange};

/// How long a daemon starting on a new store waits for another one to provision it.
const PROVISIONING_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// File, in the data dir, that receives the first admin's token.
pub const FIRST_ADMIN_TOKEN_FILE: &str = "initial-admin.token";
/// Operator id of the first admin.
pub const FIRST_ADMIN_ID: &str = "admin";
/// File, in the data dir, that receives the second admin's token.
pub const SECOND_ADMIN_TOKEN_FILE: &str = "initial-admin2.token";
/// Operator id of the second admin: dual control needs an admin besides the requester.
pub const SECOND_ADMIN_ID: &str = "admin2";
/// The dev tenant.
pub const DEV_TENANT: &str = "dev";
/// The dev operators and their roles.
pub const DEV_OPERATORS: &[(&str, Role)] = &[
    ("dev-admin", Role::Admin),
    ("dev-admin2", Role::Admin),
    ("dev-manager", Role::Manager),
    ("dev-handler", Role::Handler),
    ("dev-auditor", Role::Auditor),
];

fn system_entry(reason: String) -> AuditEntry {
    let mut entry = AuditEntry {
        operator: "system".into(),
        role: "system".into(),
        action: Action::System.as_str().into(),
        ..AuditEntry::default()
    };
    entry.allow(reason);
    entry
}

fn io_error(what: &str, path: &Path, error: std::io::Error) -> Error {
    Error::Internal(format!("cannot {what} {}: {error}", path.display()))
}

/// Writes a token file 0600 through a temporary file and rename.
fn write_token_file(path: &Path, token: &SecretString) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_error("create", dir, e))?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io_error("create", &tmp, e))?;
    file.write_all(token.expose_secret().as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_error("rename", &tmp, e))
}

impl Locker {
    /// The cluster's lease on provisioning a store at start (its first audit key, its first
    /// operators, the dev tenant), waited for while another daemon starting on the same
    /// database holds it: daemons starting together provision a new store once.
    pub async fn provisioning_lease(&self) -> Result<CallLease> {
        CallLease::take(
            std::sync::Arc::clone(&self.store),
            PROVISIONING,
            PROVISIONING_WAIT,
        )
        .await?
        .ok_or_else(|| {
            Error::Unavailable(
                "another daemon starting on this store is still provisioning it".into(),
            )
        })
    }

    async fn system_commit(&self, mutation: Mutation, reason: String) -> Result<()> {
        self.writer
            .submit(mutation, system_entry(reason))
            .await
            .map(drop)
    }

    /// Mints a token for `operator_id`, writes it to `path`, then commits it. A failed commit
    /// leaves a file holding a token the store never accepted, which is harmless.
    async fn issue_token_to_file(&self, operator_id: &str, path: &Path) -> Result<()> {
        let minted = token::mint(
            &self.rng,
            operator_id,
            self.now_ms(),
            self.token_policy.default_ttl_ms,
            None,
        )
        .map_err(|_| Error::Internal("random generator failed".into()))?;
        write_token_file(path, &minted.secret)?;
        let reason = format!(
            "token {} issued to operator {operator_id} (file)",
            minted.record.id
        );
        self.system_commit(Mutation::IssueToken(minted.record), reason)
            .await
    }

    /// Whether `path` holds a token the store still accepts for `operator_id`.
    fn token_file_valid(&self, operator_id: &str, path: &Path) -> Result<bool> {
        let Ok(text) = fs::read_to_string(path) else {
            return Ok(false);
        };
        let secret = SecretString::from(text.trim().to_owned());
        let Ok(id) = token::token_id(&secret) else {
            return Ok(false);
        };
        Ok(match self.store.reader()?.token(&id)? {
            Some(record) => {
                hashes_equal(&token_hash(&secret), &record.hash)
                    && record.operator_id == operator_id
                    && !record.revoked
                    && record.expires_at_ms > self.now_ms()
            }
            None => false,
        })
    }

    /// On an empty store, creates the admins `admin` and `admin2` (two, so that dual control
    /// can work: each approves the other's requests) and writes their tokens to
    /// `data_dir/initial-admin.token` and `data_dir/initial-admin2.token`. Returns the files'
    /// paths when it did.
    pub async fn ensure_first_admin(&self, data_dir: &Path) -> Result<Vec<PathBuf>> {
        if !self.store.reader()?.operators()?.is_empty() {
            return Ok(Vec::new());
        }
        let mut files = Vec::new();
        for (id, file, name) in [
            (FIRST_ADMIN_ID, FIRST_ADMIN_TOKEN_FILE, "first admin"),
            (SECOND_ADMIN_ID, SECOND_ADMIN_TOKEN_FILE, "second admin"),
        ] {
            let operator = self.operator(id.into(), Role::Admin, name.into());
            self.system_commit(
                Mutation::CreateOperator(operator),
                format!("{name} operator {id} created"),
            )
            .await?;
            let path = data_dir.join(file);
            self.issue_token_to_file(id, &path).await?;
            files.push(path);
        }
        Ok(files)
    }

    /// Break-glass, run on the host by whoever holds the key backend (its PIN or the TPM's
    /// auth file) while the daemon is stopped: mints a token for the admin `operator_id`
    /// (enabling it first if it was disabled) and writes it 0600 to `path`. Audited as
    /// `ADMIN_RECOVER`, naming the admin and the token id. Returns the token id.
    pub async fn recover_admin(&self, operator_id: &str, path: &Path) -> Result<String> {
        crate::domain::text::identifier("operator", operator_id).map_err(Error::InvalidArgument)?;
        let operator = self
            .store
            .reader()?
            .operator(operator_id)?
            .ok_or_else(|| Error::NotFound(format!("no operator {operator_id}")))?;
        if operator.role != Role::Admin {
            return Err(Error::FailedPrecondition(format!(
                "operator {operator_id} is a {}, not an admin: break-glass only recovers admins",
                operator.role.as_str()
            )));
        }
        let entry = |reason: String| {
            let mut entry = system_entry(reason);
            entry.operator = "host".into();
            entry.action = Action::AdminRecover.as_str().into();
            entry
        };
        if operator.disabled {
            self.writer
                .submit(
                    Mutation::ChangeOperator {
                        id: operator_id.to_owned(),
                        change: OperatorChange::Enable,
                    },
                    entry(format!(
                        "break-glass on the host: disabled admin {operator_id} enabled"
                    )),
                )
                .await?;
        }
        let minted = token::mint(
            &self.rng,
            operator_id,
            self.now_ms(),
            self.token_policy.default_ttl_ms,
            None,
        )
        .map_err(|_| Error::Internal("random generator failed".into()))?;
        write_token_file(path, &minted.secret)?;
        let id = minted.record.id.clone();
        self.writer
            .submit(
                Mutation::IssueToken(minted.record),
                entry(format!(
                    "break-glass on the host: token {id} issued to admin {operator_id} (file)"
                )),
            )
            .await?;
        Ok(id)
    }

    /// Dev mode: tenant `dev`, operators `dev-admin`, `dev-admin2` (so that one admin's
    /// change requests can be approved by the other), `dev-manager`, `dev-handler` (every
    /// purpose on `dev`), `dev-auditor` (the manager also holds every purpose on `dev`, which
    /// scopes it to that tenant), and a valid token for each in `data_dir/tokens/<id>.token`.
    /// Idempotent: a restart keeps what exists and replaces only missing or invalid tokens.
    pub async fn provision_dev(&self, data_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
        if self.store.reader()?.tenant(DEV_TENANT)?.is_none() {
            let tenant = self
                .new_tenant(NewTenant {
                    id: DEV_TENANT.into(),
                    name: "development tenant".into(),
                })
                .await?;
            self.system_commit(Mutation::CreateTenant(tenant), "dev tenant created".into())
                .await?;
        }
        let all_purposes: Vec<Grant> = self
            .purposes
            .iter()
            .map(|p| Grant {
                tenant: DEV_TENANT.into(),
                purpose: p.code.clone(),
            })
            .collect();
        let mut files = Vec::new();
        for (id, role) in DEV_OPERATORS {
            let existing = self.store.reader()?.operator(id)?;
            if existing.is_none() {
                let operator = self.operator((*id).into(), *role, format!("dev {}", role.as_str()));
                self.system_commit(
                    Mutation::CreateOperator(operator),
                    format!("dev operator {id} created"),
                )
                .await?;
            }
            let needs_grants = matches!(role, Role::Handler | Role::Manager)
                && existing.is_none_or(|op| all_purposes.iter().any(|g| !op.grants.contains(g)));
            if needs_grants {
                self.system_commit(
                    Mutation::ChangeOperator {
                        id: (*id).into(),
                        change: OperatorChange::Grant(all_purposes.clone()),
                    },
                    format!("every purpose on {DEV_TENANT} granted to {id}"),
                )
                .await?;
            }
            let path = data_dir.join("tokens").join(format!("{id}.token"));
            if !self.token_file_valid(id, &path)? {
                self.issue_token_to_file(id, &path).await?;
            }
            files.push(((*id).to_owned(), path));
        }
        Ok(files)
    }
}
