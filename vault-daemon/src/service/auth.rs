//! Authentication: from a bearer token to an operator. Every refusal says why, in words that
//! never contain the token.
//!
//! The token and its operator are taken from the daemon's
//! [`AuthorityView`](crate::audit::authority::AuthorityView): the rows as the authenticated log
//! says they are now, in memory, not read from the store (a row put back in the store from an
//! older copy decides nothing; the view's periodic hash of the tables finds it and stops the
//! daemon). The snapshot decided on goes with the call to the audit writer, which checks it
//! again where the call's entry lands in the log: a token revoked or an operator disabled on
//! another daemon meanwhile refuses the call there (see `audit::writer`).

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use crate::audit::authority::AuthoritySnapshot;
use crate::audit::entry::AuditEntry;
use crate::audit::writer::Decided;
use crate::domain::approval::GatedChange;
use crate::domain::token::{hashes_equal, token_hash, token_id};
use crate::error::{Error, Reason, Result};
use crate::service::{Caller, Locker, RequestContext};

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
        let id = match token_id(token) {
            Ok(id) => id,
            Err(_) => return Err(self.malformed_token(ctx, token).await),
        };
        // The public id only (the part before the secret), also when the token is refused.
        entry.token_id = id.clone();
        let unknown =
            || Error::Unauthenticated("unknown bearer token".into()).because(Reason::TokenUnknown);
        let hash = token_hash(token);
        let mut authority = self.writer.authority().snapshot();
        // A token issued on another daemon a moment ago is not in this view yet: the log is
        // verified up to the store's head first (at most every few milliseconds, so a flood of
        // junk tokens costs no more).
        let known = |snapshot: &AuthoritySnapshot| {
            snapshot
                .token(&id)
                .is_some_and(|record| hashes_equal(&hash, &record.hash))
        };
        if !known(&authority) && self.shares_store() && self.writer.authority().catch_up_due() {
            self.writer.check().await?;
            authority = self.writer.authority().snapshot();
        }
        if !known(&authority) {
            return Err(match self.pending_token_request(ctx, &id).await {
                Some(request) => Error::Unauthenticated(format!(
                    "token {id} is pending approval (request {request}): it works once another admin approves it"
                ))
                .because(Reason::PendingApproval),
                None => unknown(),
            });
        }
        let record = authority.token(&id).ok_or_else(unknown)?;
        let operator = authority.shared_operator(&record.operator_id);
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
            decided: Decided {
                authority: Arc::clone(&authority),
                token_id: record.id.clone(),
                operator_id: operator.id.clone(),
            },
            token_id: record.id.clone(),
            operator,
        })
    }
}

impl Locker {
    /// The open change request that would issue token `id`, if any (a holder who presents a
    /// token, or a share, before the approval is told so rather than "unknown").
    ///
    /// Asked only while the caller is not locked out by its failures: a flood of junk tokens
    /// must not turn into a flood of store reads.
    async fn pending_token_request(&self, ctx: &RequestContext, id: &str) -> Option<String> {
        if self.failures_locked(ctx) {
            return None;
        }
        self.open_request_for(|change| match change {
            GatedChange::IssueToken(token) => token.id == id,
            GatedChange::IssueSplitToken(split) => split.token.id == id,
            _ => false,
        })
        .await
        .map(|request| request.id)
    }

    /// Why a presented token is malformed: a token share presented as a token is named as
    /// such (with its request when that still waits for approval).
    async fn malformed_token(&self, ctx: &RequestContext, token: &SecretString) -> Error {
        let share_of = token
            .expose_secret()
            .strip_prefix("mns_")
            .and_then(|rest| rest.split('_').next())
            .filter(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_owned);
        let Some(id) = share_of else {
            return Error::Unauthenticated("malformed bearer token".into())
                .because(Reason::TokenMalformed);
        };
        match self.pending_token_request(ctx, &id).await {
            Some(request) => Error::Unauthenticated(format!(
                "this is a share of token {id}, which is pending approval (request {request}): the admin whose approval applies it receives the second share; then combine both with vault-client token combine"
            ))
            .because(Reason::PendingApproval),
            None => Error::Unauthenticated(format!(
                "this is a share of token {id}, not a token: combine both shares with vault-client token combine SHARE1 SHARE2"
            ))
            .because(Reason::TokenMalformed),
        }
    }
}
