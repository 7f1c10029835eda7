//! Authentication: from a bearer token to an operator. Every refusal says why, in words that
//! never contain the token.
//!
//! The token and operator rows read from the store are checked against the daemon's
//! [`AuthorityView`](crate::audit::authority::AuthorityView), the rows as the authenticated log
//! says they are now, and the call is decided on that view: a revoked token or a disabled
//! operator put back from an older copy of the store is refused as tampering (DATA_LOSS, every
//! call refused until it is repaired) by every daemon, on its next call.

use secrecy::SecretString;

use crate::audit::authority::{AuthoritySnapshot, tampered};
use crate::audit::entry::AuditEntry;
use crate::domain::operator::Operator;
use crate::domain::token::TokenRecord;
use crate::domain::token::{hashes_equal, token_hash, token_id};
use crate::error::{Error, Reason, Result};
use crate::service::{Caller, Locker, RequestContext};

/// How long a call waits for this daemon's own commit to reach the authority view before it
/// has the log checked instead.
const AUTHORITY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl Locker {
    /// Resolves the caller. Fills `entry.operator` as soon as the token names a real operator,
    /// so refusals of expired or revoked tokens are attributed in the audit log.
    pub(super) async fn authenticate(
        &self,
        ctx: &RequestContext,
        entry: &mut AuditEntry,
    ) -> Result<Caller> {
        let token: &SecretString = ctx.token.as_ref().ok_or_else(|| {
            Error::Unauthenticated("missing bearer token".into()).because(Reason::TokenMissing)
        })?;
        let id = token_id(token).map_err(|_| {
            Error::Unauthenticated("malformed bearer token".into()).because(Reason::TokenMalformed)
        })?;
        // The public id only (the part before the secret), also when the token is refused.
        entry.token_id = id.clone();
        let view = self.store.view()?;
        let unknown =
            || Error::Unauthenticated("unknown bearer token".into()).because(Reason::TokenUnknown);
        let stored_token = view.tokens().get(&id).await?;
        let stored_operator = match &stored_token {
            Some(record) => view.operators().get(&record.operator_id).await?,
            None => None,
        };
        let (record, operator) = self
            .current_authority(view.heads_seen(), &id, stored_token, stored_operator)
            .await?;
        drop(view);
        let record = record.ok_or_else(unknown)?;
        if !hashes_equal(&token_hash(token), &record.hash) {
            return Err(unknown());
        }
        entry.operator = record.operator_id.clone();
        if record.revoked {
            return Err(Error::Unauthenticated("token has been revoked".into())
                .because(Reason::TokenRevoked));
        }
        if self.now_ms() >= record.expires_at_ms {
            return Err(
                Error::Unauthenticated("token has expired".into()).because(Reason::TokenExpired)
            );
        }
        if let Some(bound) = &record.cert_fingerprint
            && ctx.cert_fingerprint.as_deref() != Some(bound.as_str())
        {
            return Err(Error::Unauthenticated(
                "token is bound to a client certificate this connection did not present".into(),
            )
            .because(Reason::CertificateMismatch));
        }
        let operator = operator
            .ok_or_else(|| Error::Unauthenticated("token's operator no longer exists".into()))?;
        entry.role = operator.role.as_str().into();
        if operator.disabled {
            return Err(Error::Unauthenticated("operator is disabled".into())
                .because(Reason::OperatorDisabled));
        }
        Ok(Caller {
            operator,
            token_id: record.id,
        })
    }

    /// The token `id` and its operator as current: `stored_*` as read from the store at audit
    /// entries `heads` (the oldest and newest read), checked against the authority view. A view behind the read is brought up
    /// to it first (on a shared store another daemon may have committed); rows that differ
    /// from a view that covers the read are tampering, reported to the writer so that every
    /// call is refused until they are right again.
    async fn current_authority(
        &self,
        heads: Option<(u64, u64)>,
        id: &str,
        stored_token: Option<TokenRecord>,
        stored_operator: Option<Operator>,
    ) -> Result<(Option<TokenRecord>, Option<Operator>)> {
        let Some((oldest, head)) = heads else {
            return Ok((stored_token, stored_operator));
        };
        let authority = self.writer.authority();
        let mut snapshot = authority.snapshot();
        if head > snapshot.verified.seq {
            if !self.shares_store() {
                // This daemon's own commit, not yet followed by the view: the store's rows are
                // newer than the view and were written by this process.
                return Ok((stored_token, stored_operator));
            }
            let current = current_rows(&snapshot, id);
            // Entries of this daemon's own batch in flight, which changes no authority row:
            // the rows the read saw are still the view's. Equal, they are decided at once
            // (the common case under load); otherwise the commit is waited for.
            let own = authority.in_flight(head);
            if own == Some(false) && current == (stored_token.clone(), stored_operator.clone()) {
                return Ok(current);
            }
            // Else another daemon appended: the log is verified up to the read first.
            if own.is_none() || !authority.wait_for_own(head, AUTHORITY_WAIT).await {
                self.writer.check().await?;
            }
            snapshot = authority.snapshot();
            if head > snapshot.verified.seq {
                return Err(Error::Unavailable(
                    "the audit log could not be verified up to the rows read; nothing was released"
                        .into(),
                ));
            }
        }
        let (current_token, current_operator) = current_rows(&snapshot, id);
        // With the same token, both operators were read under one id; a token that differs is
        // tampering already.
        if snapshot.covers(oldest)
            && snapshot.covers(head)
            && (stored_token != current_token || stored_operator != current_operator)
        {
            let error = tampered(snapshot.changed_at);
            self.writer.report_tampering(error.clone()).await;
            return Err(Error::from(error));
        }
        Ok((current_token, current_operator))
    }
}

/// Token `id` and its operator as `snapshot` holds them.
fn current_rows(snapshot: &AuthoritySnapshot, id: &str) -> (Option<TokenRecord>, Option<Operator>) {
    let token = snapshot.token(id).cloned();
    let operator = token
        .as_ref()
        .and_then(|t| snapshot.operator(&t.operator_id))
        .cloned();
    (token, operator)
}
