//! The locker's operations on domain types, with no transport types: authentication,
//! authorisation, the operations themselves, and the one rule that every call — allowed,
//! denied or failed — commits exactly one audit entry before it answers.
//!
//! Each operation runs as `begin` (authenticate and check the role; on refusal, audit and
//! return) → the operation's body (which fills in the audit entry and returns a value and a
//! mutation) → `finish` (commit the mutation with the entry; only then return the value).

mod admin;
mod audit_log;
mod auth;
mod bench;
pub mod bootstrap;
mod destruction;
mod records;
pub mod rotation;

use std::sync::Arc;

use ring::rand::SystemRandom;
use secrecy::SecretString;

use crate::audit::checkpointer::{CheckpointPolicy, Checkpointer};
use crate::audit::entry::AuditEntry;
use crate::audit::entry::EntryOutcome;
use crate::audit::writer::AuditWriter;
use crate::clock::Clock;
use crate::domain::operator::Operator;
use crate::domain::policy::Action;
use crate::domain::purpose::PurposeCatalogue;
use crate::error::{Error, Result};
use crate::keys::KeyService;
use crate::store::Store;
use crate::store::mutation::{Mutation, MutationOutcome};

pub use admin::{NewOperator, NewTenant, TokenRequest};
pub use audit_log::{AuditPages, StoreVerification, verify_store};
pub use records::{SealRequest, SealResult};

/// Who is calling, as the transport saw it.
pub struct RequestContext {
    /// The bearer token, if one was sent.
    pub token: Option<SecretString>,
    /// Peer socket address, if known.
    pub peer_addr: Option<String>,
    /// Lowercase hex SHA-256 of the client certificate (DER), with mutual TLS.
    pub cert_fingerprint: Option<String>,
    /// Request id for correlating logs and audit entries.
    pub request_id: String,
}

impl RequestContext {
    fn peer_description(&self) -> String {
        match (&self.peer_addr, &self.cert_fingerprint) {
            (Some(addr), Some(fp)) => format!("{addr} cert:{}", &fp[..fp.len().min(16)]),
            (Some(addr), None) => addr.clone(),
            (None, Some(fp)) => format!("cert:{}", &fp[..fp.len().min(16)]),
            (None, None) => String::new(),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The operator the token belongs to.
    pub operator: Operator,
    /// The token's public id.
    pub token_id: String,
}

/// Token lifetime policy, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct TokenPolicy {
    /// Lifetime when the issuer does not say.
    pub default_ttl_ms: i64,
    /// Longest lifetime.
    pub max_ttl_ms: i64,
}

/// Everything the operations need.
pub struct Locker {
    checkpointer: Checkpointer,
    store: Arc<dyn Store>,
    writer: AuditWriter,
    keys: KeyService,
    purposes: PurposeCatalogue,
    clock: Arc<dyn Clock>,
    rng: SystemRandom,
    token_policy: TokenPolicy,
    destroy_wait_ms: i64,
}

impl Locker {
    /// Assembles the service.
    pub fn new(
        store: Arc<dyn Store>,
        writer: AuditWriter,
        keys: KeyService,
        purposes: PurposeCatalogue,
        clock: Arc<dyn Clock>,
        token_policy: TokenPolicy,
        checkpoint_policy: CheckpointPolicy,
    ) -> Locker {
        Locker::with_destroy_wait(
            store,
            writer,
            keys,
            purposes,
            clock,
            token_policy,
            checkpoint_policy,
            7 * 24 * 3600 * 1000,
        )
    }

    /// Like [`Locker::new`], with the waiting period between approval and destruction of a key.
    #[allow(clippy::too_many_arguments)]
    pub fn with_destroy_wait(
        store: Arc<dyn Store>,
        writer: AuditWriter,
        keys: KeyService,
        purposes: PurposeCatalogue,
        clock: Arc<dyn Clock>,
        token_policy: TokenPolicy,
        checkpoint_policy: CheckpointPolicy,
        destroy_wait_ms: i64,
    ) -> Locker {
        Locker {
            checkpointer: Checkpointer::new(
                Arc::clone(&store),
                writer.clone(),
                keys.clone(),
                Arc::clone(&clock),
                checkpoint_policy,
            ),
            store,
            writer,
            keys,
            purposes,
            clock,
            rng: SystemRandom::new(),
            token_policy,
            destroy_wait_ms,
        }
    }

    /// The purpose catalogue in force.
    pub fn purposes(&self) -> &PurposeCatalogue {
        &self.purposes
    }

    /// The audit checkpointer (for its background task and the final checkpoint at shutdown).
    pub fn checkpointer(&self) -> &Checkpointer {
        &self.checkpointer
    }

    /// The key service (for health checks).
    pub fn keys(&self) -> &KeyService {
        &self.keys
    }

    /// Authenticates the caller and checks its role may call `action`. A refusal is audited
    /// here, and the error returned is the one to answer with.
    async fn begin(&self, ctx: &RequestContext, action: Action) -> Result<(Caller, AuditEntry)> {
        let mut entry = AuditEntry {
            action: action.as_str().into(),
            request_id: ctx.request_id.clone(),
            peer: ctx.peer_description(),
            ..AuditEntry::default()
        };
        let checked = self.authenticate(ctx, &mut entry).and_then(|caller| {
            entry.operator = caller.operator.id.clone();
            entry.role = caller.operator.role.as_str().into();
            if action.permits(caller.operator.role) {
                Ok(caller)
            } else {
                Err(Error::PermissionDenied(format!(
                    "role {} may not call {}",
                    caller.operator.role.as_str(),
                    action.as_str()
                )))
            }
        });
        match checked {
            Ok(caller) => Ok((caller, entry)),
            Err(error) => Err(self.refuse(entry, error).await),
        }
    }

    /// Commits the entry of a call that ends in `error`; returns the error to answer with
    /// (the audit failure itself if the entry could not be committed).
    async fn refuse(&self, mut entry: AuditEntry, error: Error) -> Error {
        entry.fail(&error);
        match self.writer.submit(Mutation::None, entry).await {
            Ok(_) => error,
            Err(audit_error) => audit_error,
        }
    }

    /// Ends a call: commits its mutation and audit entry, then hands back the value. A value
    /// whose entry cannot be committed is dropped (and zeroised, for numbers), never returned.
    async fn finish<T>(
        &self,
        mut entry: AuditEntry,
        body: Result<(T, Mutation)>,
    ) -> Result<(T, MutationOutcome)> {
        match body {
            Ok((value, mutation)) => {
                if entry.outcome.is_empty() {
                    entry.allow("");
                }
                let outcome = self.writer.submit(mutation, entry).await?;
                Ok((value, outcome))
            }
            Err(error) => Err(self.refuse(entry, error).await),
        }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}
